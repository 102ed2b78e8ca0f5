"""What is known of a registered backbone without building it: its input size, default layer, stages, layer names
and what it supports, declared with the architecture (``architectures``) and read by the spec check, the admin and
the API, so checking a spec never builds a model.

The layer names are those ``Backbone.layer_names`` finds by probing one forward pass; they depend on the
architecture alone, so they are recorded once in ``layer_names.json`` (a test builds every registered backbone and
compares; ``scripts/record_layer_names.py`` writes the file again after an architecture changes).
"""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Architecture", "recorded_layer_names", "layer_name_check", "image_size_check", "LAYER_NAMES_FILE"]

LAYER_NAMES_FILE = Path(__file__).with_name("layer_names.json")


@functools.lru_cache(maxsize=1)
def _recorded() -> dict[str, tuple[str, ...]]:
    with LAYER_NAMES_FILE.open(encoding="utf-8") as fh:
        return {name: tuple(names) for name, names in json.load(fh).items()}


def recorded_layer_names(name: str) -> tuple[str, ...]:
    """The layer names recorded for architecture ``name`` (empty when none are recorded)."""
    return _recorded().get(name, ())


def layer_name_check(*, backbone: str, layer: str, names: tuple[str, ...] | list[str]) -> None:
    """Raise ``ValueError`` (with close matches and every valid name) unless ``layer`` is one of ``names``."""
    if layer in names:
        return
    close = difflib.get_close_matches(str(layer), names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(n) for n in close)}?" if close else ""
    raise ValueError(
        f"Unknown layer '{layer}' for backbone '{backbone}'.{hint} "
        f"Valid layers (also from layer_names('{backbone}')): {', '.join(names)}."
    )


def image_size_check(*, backbone: str, size: int, input_size: int, fixed_size: bool, min_size: int) -> None:
    """Raise ``ValueError`` with a reason unless images of ``size`` px fit the backbone."""
    if fixed_size and size != input_size:
        raise ValueError(f"Backbone '{backbone}' accepts only {input_size}x{input_size} images, not {size}.")
    if size < min_size:
        raise ValueError(f"Backbone '{backbone}' needs images of at least {min_size}x{min_size} px, not {size}.")


@dataclass(frozen=True)
class Architecture:
    """A registered backbone as static data (``Backbone`` has the same fields once built).

    ``layers``: the names ``features`` accepts (default: those recorded in ``layer_names.json``). ``stages``: the
    short list a layer sweep usually takes, shallow to deep, ending with the default layer. ``fake_relu``: the last
    activation before the default layer can become a FakeReLU. ``fixed_size``: only ``input_size`` is accepted.
    """

    name: str
    input_size: int
    default_layer: str
    stages: tuple[str, ...] = ()
    fixed_size: bool = False
    min_size: int = 8
    fake_relu: bool = False
    supports_channels_last: bool = True
    layers: tuple[str, ...] | None = None

    def layer_names(self) -> list[str]:
        return list(self.layers if self.layers is not None else recorded_layer_names(self.name))

    def stage_names(self) -> list[str]:
        return list(self.stages or (self.default_layer,))

    @property
    def supports_fake_relu(self) -> bool:
        return self.fake_relu

    def check_layer(self, layer: str) -> None:
        layer_name_check(backbone=self.name, layer=layer, names=self.layer_names())

    def check_size(self, size: int) -> None:
        image_size_check(backbone=self.name, size=size, input_size=self.input_size, fixed_size=self.fixed_size,
                         min_size=self.min_size)
