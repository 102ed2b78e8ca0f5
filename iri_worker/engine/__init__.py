"""IRI engine: pure PyTorch generation of identically represented inputs.

Starting from a seed image x0, descend until the representation g(x) of a
backbone at some layer matches g(x_t) of a target photo x_t (Nanda et al.,
AAAI 2023; every formula in ../shared/docs/paper-method.md).

This package imports only torch, torchvision, numpy, PIL and pytorch-msssim
(never Django or sibling apps), prints nothing and touches no files except
weight files whose path a caller gives to the backbone registry and its own
layer_names.json. The Django side uses only the names below: a JSON-able spec
goes in, tensors and per-image numbers come out.

Modules: spec (InversionSpec), invert (the loop), losses + recipes (composable
per-image terms and the paper's recipes as data), transforms (transformation
robustness), params (pixel / Fourier parametrisation), steps (normalised
gradient / Adam), seeds, backbones (registry, FakeReLU), architectures (the
registered networks), catalog (each registered network as static data: sizes,
layer names, stages, so that a spec is checked without building a model),
checkpoints (weights files), proxy (the perceptual
alignment proxy), validity (null distribution, percentile, label check,
loss-curve steps), layout (NCHW or channels-last, whichever a few timed steps on this host
find faster, cached per process), precision (fp32, bf16 autocast, or "auto": bf16 where timed
steps find it faster here and the loss after the same steps within 1 %), calibration (the
timing both share), images (PIL/PNG <-> tensors), allocator (keep_freed_memory: glibc
set up so each step reuses the last step's memory instead of faulting in fresh pages).
"""

from . import losses, proxy, validity
from .allocator import keep_freed_memory
from .backbones import (
    Backbone,
    describe_backbone,
    layer_names,
    list_backbones,
    load_backbone,
    register_backbone,
    stage_names,
)
from .catalog import Architecture
from .checkpoints import checkpoint_sha256
from .images import eight_bit, png_bytes_to_tensor, photo_to_tensor, tensor_to_png_bytes
from .invert import InversionResult, invert, measure_adaptive_c
from .layout import LayoutCalibration, cpu_capability, layout_cache_clear, layout_calibrate, layout_named
from .params import PARAMS
from .precision import (
    PRECISIONS, PrecisionCalibration, bf16_supported, host_device_type, precision_cache_clear, precision_calibrate,
    precision_named, precisions_supported,
)
from .proxy import PROXY_METRICS, lpips_available, perceptual_distance, proxy_alignment
from .recipes import RECIPES, build_loss, expand_recipe, recipe_has_adaptive_c, with_adversarial_c
from .seeds import PHOTO_SEED, SEED_KINDS, make_seed
from .spec import SPEC_SEED_KINDS, InversionSpec
from .steps import STEPS, round_starts, round_step_size
from .transforms import TRANSFORMS

__all__ = [
    "InversionSpec",
    "InversionResult",
    "invert",
    "measure_adaptive_c",
    "recipe_has_adaptive_c",
    "register_backbone",
    "describe_backbone",
    "Architecture",
    "list_backbones",
    "load_backbone",
    "layer_names",
    "stage_names",
    "checkpoint_sha256",
    "Backbone",
    "SEED_KINDS",
    "SPEC_SEED_KINDS",
    "PHOTO_SEED",
    "RECIPES",
    "build_loss",
    "expand_recipe",
    "with_adversarial_c",
    "TRANSFORMS",
    "PARAMS",
    "STEPS",
    "round_starts",
    "round_step_size",
    "make_seed",
    "photo_to_tensor",
    "tensor_to_png_bytes",
    "png_bytes_to_tensor",
    "eight_bit",
    "losses",
    "proxy",
    "validity",
    "PROXY_METRICS",
    "perceptual_distance",
    "proxy_alignment",
    "lpips_available",
    "keep_freed_memory",
    "LayoutCalibration",
    "layout_calibrate",
    "layout_named",
    "layout_cache_clear",
    "cpu_capability",
    "PRECISIONS",
    "PrecisionCalibration",
    "precision_calibrate",
    "precision_named",
    "precision_cache_clear",
    "precisions_supported",
    "bf16_supported",
    "host_device_type",
]
