"""InversionSpec: the JSON-able description of one inversion run."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .backbones import check_backbone_name, load_backbone
from .recipes import RECIPES
from .seeds import SEED_KINDS

__all__ = ["InversionSpec", "MAX_STEPS", "MIN_IMAGE_SIZE", "MAX_IMAGE_SIZE"]

MAX_STEPS = 100_000
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024
MAX_RNG_SEED = 2**63 - 1


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class InversionSpec:
    """Everything that determines an inversion run (together with targets/seeds).

    ``layer=None`` / ``image_size=None`` mean "the backbone's default" (its
    penultimate layer / native input size); ``to_dict`` writes the resolved
    values so a stored spec reproduces the run even if defaults change.
    Direct construction is not validated (trusted callers); use ``from_dict``
    for anything coming from users or storage.
    """

    backbone: str = "efficientnet_lite0"
    layer: str | None = None
    recipe: str = "reg_free"
    seed_kind: str = "super-noise"
    steps: int = 1000
    step_size: float = 1.0
    image_size: int | None = None
    rng_seed: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InversionSpec:
        """Validate ``data`` (missing keys take defaults) and build a spec.

        Raises ``ValueError`` listing every problem found, one sentence each,
        each naming the offending field. May load the backbone (CPU) to check
        ``layer``.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"An inversion spec must be a dict, got {type(data).__name__}.")
        fields = [f.name for f in dataclasses.fields(cls)]
        problems = [
            f"Unknown field '{key}'; allowed fields are {', '.join(fields)}."
            for key in data
            if key not in fields
        ]
        values = {**{f.name: f.default for f in dataclasses.fields(cls)}, **data}

        backbone_ok = isinstance(values["backbone"], str)
        if not backbone_ok:
            problems.append("backbone must be a string naming a registered backbone.")
        else:
            try:
                check_backbone_name(values["backbone"])
            except ValueError as error:
                backbone_ok = False
                problems.append(str(error))

        layer = values["layer"]
        if layer is not None and not isinstance(layer, str):
            problems.append("layer must be a string (a dotted module name) or null.")
        elif layer is not None and backbone_ok:
            try:
                load_backbone(values["backbone"]).check_layer(layer)
            except ValueError as error:
                problems.append(str(error))

        if not isinstance(values["recipe"], str) or values["recipe"] not in RECIPES:
            problems.append(
                f"Unknown recipe '{values['recipe']}'. Available: {', '.join(sorted(RECIPES))}."
            )
        if not isinstance(values["seed_kind"], str) or values["seed_kind"] not in SEED_KINDS:
            problems.append(
                f"Unknown seed_kind '{values['seed_kind']}'. Available: {', '.join(SEED_KINDS)}."
            )

        steps = values["steps"]
        if not _is_int(steps) or not 1 <= steps <= MAX_STEPS:
            problems.append(f"steps must be a positive integer ≤ {MAX_STEPS} (got {steps!r}).")

        step_size = values["step_size"]
        if not (isinstance(step_size, numbers.Real) and not isinstance(step_size, bool)) or not (
            math.isfinite(step_size) and step_size > 0
        ):
            problems.append(f"step_size must be a finite number > 0 (got {step_size!r}).")

        size = values["image_size"]
        if size is not None and (not _is_int(size) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE):
            problems.append(
                f"image_size must be an integer between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} "
                f"or null (got {size!r})."
            )

        seed = values["rng_seed"]
        if not _is_int(seed) or not 0 <= seed <= MAX_RNG_SEED:
            problems.append(f"rng_seed must be an integer between 0 and 2**63-1 (got {seed!r}).")

        if problems:
            raise ValueError(" ".join(problems))
        values["step_size"] = float(step_size)
        return cls(**values)

    def resolved(self) -> InversionSpec:
        """A copy with ``layer`` and ``image_size`` filled in from the backbone."""
        if self.layer is not None and self.image_size is not None:
            return self
        backbone = load_backbone(self.backbone)
        return dataclasses.replace(
            self,
            layer=self.layer if self.layer is not None else backbone.default_layer,
            image_size=self.image_size if self.image_size is not None else backbone.input_size,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with every field, defaults resolved; ``from_dict`` reads it back."""
        return dataclasses.asdict(self.resolved())
