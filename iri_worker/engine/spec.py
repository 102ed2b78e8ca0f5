"""InversionSpec: the JSON-able description of one inversion run."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernel.records import record_check_dict, record_unknown_keys

from .backbones import Backbone, check_backbone_name, describe_backbone
from .catalog import Architecture
from .checkpoints import checkpoint_sha256
from .params import PARAMS
from .precision import DEFAULT_PRECISION, PRECISIONS, precision_check
from .proxy import _LPIPS_MISSING, lpips_available
from .recipes import expand_recipe, recipe_uses_metric
from .seeds import PHOTO_SEED, SEED_KINDS
from .steps import STEPS
from .transforms import TRANSFORMS

__all__ = ["InversionSpec", "MAX_STEPS", "MAX_STEP_ROUNDS", "MIN_IMAGE_SIZE", "MAX_IMAGE_SIZE", "SPEC_SEED_KINDS"]

MAX_STEPS = 100_000
MAX_STEP_ROUNDS = 32  # the step size halves per round: 2**-31 of it is already below float32 resolution
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024
MAX_RNG_SEED = 2**63 - 1
SPEC_SEED_KINDS: tuple[str, ...] = (*SEED_KINDS, PHOTO_SEED)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class InversionSpec:
    """Everything that determines an inversion run (together with targets/seeds).

    Fields (all JSON values):

    backbone, layer      registry name; dotted layer (None: the backbone's penultimate one)
    recipe               a name in ``RECIPES`` or a term list (see recipes.py)
    seed_kind            super-noise | light-noise | white | black | photo (caller passes seeds)
    steps, step_size     iterations; step length (normalised gradient) or learning rate (Adam)
    image_size           side in px (None: the backbone's input size)
    rng_seed             seeds the seed draw and the random transforms
    param                "pixel" | "fft" (Fourier, decorrelated colour)
    transforms           None | "cifar" | "imagenet" (transformation robustness)
    step_rule            "normalized_gradient" (the paper's) | "adam"
    step_rounds          split ``steps`` into this many equal rounds, halving the step size at the
                         start of each new round (Feather et al.'s schedule: steps=24000,
                         step_rounds=8); 1 (default): one constant step size
    stop_loss            None, or stop an image once its loss is <= this
    fake_relu            FakeReLU on the last activation (where the backbone supports it)
    precision            "fp32" (default) | "bf16" (bf16 autocast for the backbone, CPU and CUDA) | "auto": bf16
                         where the worker measures it faster on its host and the loss after the same steps within
                         1 % of fp32's, else fp32 (``precision``; recorded as the result's
                         ``precision_calibration``). Older specs' ``amp`` true/false reads as "bf16"/"fp32".
    channels_last        None: the faster layout on this host, measured by the worker at the start of a run
                         (``layout``; recorded as the result's ``layout_calibration``); True/False to force
    weights_path         local checkpoint for the backbone (None: the entry's default)
    checkpoint_sha256    SHA-256 of that file (filled in by ``resolved``; checked by ``invert``)
    recipe_terms         the expanded recipe (filled in by ``resolved``); when set, it is what
                         runs, so a stored spec keeps its weights even if ``RECIPES`` change

    ``to_dict`` writes the resolved values (layer, image size, recipe terms,
    fake_relu as actually applied, checkpoint hash) so a stored spec
    reproduces the run. Direct construction is not validated (trusted
    callers); use ``from_dict`` for anything coming from users or storage.
    A dict with only the original eight fields still loads (new fields default).
    """

    backbone: str = "efficientnet_lite0"
    layer: str | None = None
    recipe: str | list = "reg_free"
    seed_kind: str = "super-noise"
    steps: int = 1000
    step_size: float = 1.0
    image_size: int | None = None
    rng_seed: int = 0
    param: str = "pixel"
    transforms: str | None = None
    step_rule: str = "normalized_gradient"
    step_rounds: int = 1
    stop_loss: float | None = None
    fake_relu: bool = True
    precision: str = DEFAULT_PRECISION
    channels_last: bool | None = None
    weights_path: str | None = None
    checkpoint_sha256: str | None = None
    recipe_terms: list | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InversionSpec:
        """Validate ``data`` (missing keys take defaults) and build a spec.

        Raises ``ValueError`` listing every problem found, one sentence each,
        each naming the offending field. ``layer``, ``image_size``, ``transforms`` and
        ``channels_last`` are checked against the backbone's static description
        (``describe_backbone``): nothing is built. ``precision`` is checked against what
        this host runs. A stored spec's ``amp`` (before ``precision``) reads as
        precision "bf16" (true) or "fp32" (false).
        """
        record_check_dict(data, what="An inversion spec")
        unknown = record_unknown_keys(cls, data, what="The inversion spec", ignore=_LEGACY_KEYS)
        problems = [unknown] if unknown else []
        values = {**{f.name: f.default for f in dataclasses.fields(cls)},
                  **{key: value for key, value in data.items() if key not in _LEGACY_KEYS}}
        problems += _legacy_amp_problems(data, values)
        backbone_problems, facts = _backbone_checked(values["backbone"])
        problems += backbone_problems
        for check in _CHECKS:
            problems += check(values, facts)
        if problems:
            raise ValueError(" ".join(problems))
        values["step_size"] = float(values["step_size"])
        if values["stop_loss"] is not None:
            values["stop_loss"] = float(values["stop_loss"])
        return cls(**values)

    def resolved(self, backbone: Backbone | None = None) -> InversionSpec:
        """A copy with every "default" filled in from the backbone (its static description unless a built
        one is given: nothing is built here)."""
        digest = self.checkpoint_sha256
        if digest is None and self.weights_path is not None:
            digest = (backbone.checkpoint_sha256 if backbone else None) or checkpoint_sha256(self.weights_path)
        facts: Backbone | Architecture = backbone if backbone is not None else describe_backbone(self.backbone)
        return dataclasses.replace(
            self,
            layer=self.layer if self.layer is not None else facts.default_layer,
            image_size=self.image_size if self.image_size is not None else facts.input_size,
            recipe_terms=self.recipe_terms if self.recipe_terms is not None else expand_recipe(self.recipe),
            fake_relu=bool(self.fake_relu and facts.supports_fake_relu),
            # channels_last stays None unless named: the worker measures the faster layout on its own host
            checkpoint_sha256=digest,
        )

    def to_dict(self, backbone: Backbone | None = None) -> dict[str, Any]:
        """JSON-able dict with every field, defaults resolved; ``from_dict`` reads it back."""
        return dataclasses.asdict(self.resolved(backbone))


# --------------------------------------------------------------------------- the checks of from_dict
# Each takes the spec's values and the backbone's static description (None when the backbone is not a known one)
# and returns its problems, one sentence each, naming the field.

Values = dict[str, Any]
_LEGACY_KEYS = ("amp",)  # amp: true/false, as specs stored it before precision: "bf16"/"fp32"


def _legacy_amp_problems(data: Mapping[str, Any], values: Values) -> list[str]:
    """A stored spec's ``amp`` becomes its precision; one that also names another precision is refused."""
    if "amp" not in data:
        return []
    amp = data["amp"]
    if not isinstance(amp, bool):
        return [(f"amp must be true or false (got {amp!r}); it is the old name of precision, which says "
                 f"{', '.join(PRECISIONS)}.")]
    implied = "bf16" if amp else "fp32"
    if "precision" in data and data["precision"] != implied:
        return [(f"precision {data['precision']!r} contradicts amp {str(amp).lower()} (which means precision "
                 f"'{implied}'); set precision alone.")]
    values["precision"] = implied
    return []


def _backbone_checked(name: object) -> tuple[list[str], Architecture | None]:
    if not isinstance(name, str):
        return ["backbone must be a string naming a registered backbone."], None
    try:
        check_backbone_name(name)
    except ValueError as error:
        return [str(error)], None
    return [], describe_backbone(name)


def _layer_problems(values: Values, facts: Architecture | None) -> list[str]:
    layer = values["layer"]
    if layer is not None and not isinstance(layer, str):
        return ["layer must be a string (a dotted module name) or null."]
    if layer is not None and facts is not None:
        try:
            facts.check_layer(layer)
        except ValueError as error:
            return [str(error)]
    return []


def _recipe_problems(values: Values, _facts: Architecture | None) -> list[str]:
    problems = []
    for key in ("recipe", "recipe_terms"):
        recipe = values[key]
        if recipe is None and key == "recipe_terms":
            continue
        if key == "recipe_terms" and isinstance(recipe, str):
            problems.append("recipe_terms must be a list of terms or null.")
            continue
        try:
            expand_recipe(recipe)
            if recipe_uses_metric(recipe, "lpips") and not lpips_available():
                problems.append(f"{key}: {_LPIPS_MISSING}")
        except (ValueError, TypeError) as error:
            problems.append(f"{key}: {error}")
    return problems


def _seed_kind_problems(values: Values, _facts: Architecture | None) -> list[str]:
    if not isinstance(values["seed_kind"], str) or values["seed_kind"] not in SPEC_SEED_KINDS:
        return [f"Unknown seed_kind '{values['seed_kind']}'. Available: {', '.join(SPEC_SEED_KINDS)}."]
    return []


def _step_problems(values: Values, _facts: Architecture | None) -> list[str]:
    problems = []
    steps = values["steps"]
    if not _is_int(steps) or not 1 <= steps <= MAX_STEPS:
        problems.append(f"steps must be a positive integer ≤ {MAX_STEPS} (got {steps!r}).")
    rounds = values["step_rounds"]
    if not _is_int(rounds) or not 1 <= rounds <= MAX_STEP_ROUNDS:
        problems.append(f"step_rounds must be an integer between 1 and {MAX_STEP_ROUNDS} (got {rounds!r}).")
    elif _is_int(steps) and 1 <= steps <= MAX_STEPS and rounds > steps:
        problems.append(f"step_rounds ({rounds}) cannot exceed steps ({steps}): every round needs a step.")
    step_size = values["step_size"]
    if not _is_number(step_size) or not (math.isfinite(step_size) and step_size > 0):
        problems.append(f"step_size must be a finite number > 0 (got {step_size!r}).")
    return problems


def _image_size_problems(values: Values, facts: Architecture | None) -> list[str]:
    size = values["image_size"]
    if size is not None and (not _is_int(size) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE):
        return [f"image_size must be an integer between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} or null (got {size!r})."]
    if size is not None and facts is not None:
        try:
            facts.check_size(size)
        except ValueError as error:
            return [f"image_size: {error}"]
    return []


def _rng_seed_problems(values: Values, _facts: Architecture | None) -> list[str]:
    seed = values["rng_seed"]
    if not _is_int(seed) or not 0 <= seed <= MAX_RNG_SEED:
        return [f"rng_seed must be an integer between 0 and 2**63-1 (got {seed!r})."]
    return []


def _method_problems(values: Values, facts: Architecture | None) -> list[str]:
    """param, step_rule, transforms."""
    problems = []
    for key, options in (("param", PARAMS), ("step_rule", STEPS)):
        if not isinstance(values[key], str) or values[key] not in options:
            problems.append(f"Unknown {key} {values[key]!r}. Available: {', '.join(options)}.")
    transforms = values["transforms"]
    if transforms is not None and (not isinstance(transforms, str) or transforms not in TRANSFORMS):
        problems.append(f"Unknown transforms {transforms!r}. Available: {', '.join(TRANSFORMS)} or null.")
    elif transforms is not None and facts is not None and facts.fixed_size:
        problems.append(
            f"transforms: backbone '{values['backbone']}' accepts only one input size, "
            "so random scaling/padding cannot be used with it (set transforms to null)."
        )
    return problems


def _run_option_problems(values: Values, facts: Architecture | None) -> list[str]:
    """stop_loss, fake_relu, channels_last (what the backbone runs) and precision (what this host runs)."""
    problems = []
    stop = values["stop_loss"]
    if stop is not None and not (_is_number(stop) and math.isfinite(stop)):
        problems.append(f"stop_loss must be a finite number or null (got {stop!r}).")
    if not isinstance(values["fake_relu"], bool):
        problems.append(f"fake_relu must be true or false (got {values['fake_relu']!r}).")
    if values["channels_last"] is not None and not isinstance(values["channels_last"], bool):
        problems.append(f"channels_last must be true, false or null (got {values['channels_last']!r}).")
    elif values["channels_last"] is True and facts is not None and not facts.supports_channels_last:
        problems.append(
            f"channels_last: backbone '{values['backbone']}' runs only the NCHW layout, so channels_last "
            "must be false or null (null: the worker measures which layout is faster on its host)."
        )
    try:
        precision_check(values["precision"])  # a known one this host runs
    except ValueError as error:
        problems.append(str(error))
    return problems


def _weights_problems(values: Values, _facts: Architecture | None) -> list[str]:
    problems = []
    path, digest = values["weights_path"], values["checkpoint_sha256"]
    if path is not None and (not isinstance(path, str) or not os.path.isfile(path)):
        problems.append(f"weights_path must name an existing local file (got {path!r}).")
    if digest is not None and (not isinstance(digest, str) or not _SHA256.match(digest)):
        problems.append("checkpoint_sha256 must be 64 lowercase hex digits or null.")
    elif digest is not None and path is not None and os.path.isfile(path) and checkpoint_sha256(path) != digest:
        problems.append(f"checkpoint_sha256 does not match the file at weights_path ({path}).")
    return problems


_CHECKS = (_layer_problems, _recipe_problems, _seed_kind_problems, _step_problems, _image_size_problems,
           _rng_seed_problems, _method_problems, _run_option_problems, _weights_problems)
