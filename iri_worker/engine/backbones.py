"""Backbone registry: a model plus everything needed to feed it and read it.

Each entry carries its own preprocessing (mean/std), native input size and the
representation layer the paper uses (penultimate, pooled), torchvision style,
so no caller hard-codes any of them. Weights only ever come from local files
(``checkpoints``); the registered architectures are defined in ``architectures``, each with its
static description (``catalog.Architecture``: sizes, layers, stages), which is all a spec check needs.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from torch import nn

from .catalog import Architecture, image_size_check, layer_name_check
from .checkpoints import checkpoint_sha256
from .features import extract, probe_layers
from .fold import batchnorm_folded, batchnorm_pairs

__all__ = [
    "Backbone",
    "SwitchableReLU",
    "register_backbone",
    "describe_backbone",
    "list_backbones",
    "load_backbone",
    "layer_names",
    "stage_names",
]


def _clamp01(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1], keeping gradient 1 ON the bounds (0 strictly outside).

    Why not ``x.clamp(0, 1)``: in this torch version its gradient is 0 at
    exactly 0 and 1, so every pixel that the [0,1] projection pins to a bound
    would be frozen there for the rest of the run. The paper's normaliser
    (older torch) passed gradients on the bounds; this reproduces that.
    """
    inside = (x >= 0) & (x <= 1)
    return torch.where(inside, x, x.detach().clamp(0, 1))


class FakeReLUFunction(torch.autograd.Function):
    """ReLU forward, identity backward (Engstrom et al.; MadryLab ``robustness``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


class SwitchableReLU(nn.Module):
    """A ReLU that becomes a FakeReLU while ``fake`` is True (set per run)."""

    def __init__(self) -> None:
        super().__init__()
        self.fake = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FakeReLUFunction.apply(x) if self.fake else torch.relu(x)


@dataclass(eq=False)
class Backbone:
    """A frozen model with its preprocessing and representation layers.

    ``module`` is in eval mode with ``requires_grad=False`` on every parameter
    (``load_backbone`` ensures that). Inputs to ``features``/``normalize`` are
    float batches (B, 3, H, W) with values meant in [0, 1], on the module's device.

    ``fake_relu_modules``: the last activation before the default layer, as
    ``SwitchableReLU`` (empty where the architecture ends in another activation:
    no FakeReLU there, as in the paper). ``channels_last``: the layout the validity checks and the benchmark's
    loops put the model in (a run whose spec names no layout measures the faster one instead, see ``layout``).
    ``supports_channels_last``: False where the model cannot use channels-last (never timed, refused when a
    spec forces it). ``fixed_size``: the model accepts only
    ``input_size`` (ViT). ``min_size``: the smallest input it accepts.
    ``checkpoint_sha256``: SHA-256 of the weights file it was built from, if any.
    ``classifier``: the module's forward ends in a classification head whose weights are the model's
    own (``classify`` gives its logits); False where the head is missing or was left random because a
    checkpoint had none (a contrastive backbone). ``label_names``: the class names in logit order
    where known (ImageNet's 1,000 for ImageNet architectures), else None. ``stages``: a short, curated
    list of layers for layer sweeps (the output of each main block or stage, shallow to deep, ending with
    the default layer), each one of ``layer_names()``.
    """

    name: str
    module: nn.Module
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_layer: str
    fake_relu_modules: tuple[SwitchableReLU, ...] = ()
    channels_last: bool = False
    fixed_size: bool = False
    min_size: int = 8
    checkpoint_sha256: str | None = None
    classifier: bool = False
    label_names: tuple[str, ...] | None = None
    stages: tuple[str, ...] = ()
    supports_channels_last: bool = True
    _layers: tuple[str, ...] | None = field(default=None, init=False, repr=False)
    _layer_modules: dict[str, nn.Module] = field(default_factory=dict, init=False, repr=False)
    _stats: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, init=False, repr=False)
    _batchnorm_pairs: list[tuple[str, str]] | None = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, architecture: Architecture, module: nn.Module, *, mean: tuple[float, float, float],
           std: tuple[float, float, float], **fields) -> Backbone:
        """The built model of ``architecture``: its static fields (name, sizes, layers, stages) come from there."""
        return cls(architecture.name, module, architecture.input_size, mean, std,
                   default_layer=architecture.default_layer, fixed_size=architecture.fixed_size,
                   min_size=architecture.min_size, stages=architecture.stages,
                   supports_channels_last=architecture.supports_channels_last, **fields)

    @property
    def device(self) -> torch.device:
        for tensor in self.module.parameters():
            return tensor.device
        return torch.device("cpu")

    @property
    def supports_fake_relu(self) -> bool:
        return bool(self.fake_relu_modules)

    def set_fake_relu(self, enabled: bool) -> None:
        """Turn the FakeReLU on the last activation on or off (no-op where unsupported)."""
        for module in self.fake_relu_modules:
            module.fake = bool(enabled)

    def set_channels_last(self, enabled: bool) -> None:
        """Store the weights channels-last (True) or contiguous (False)."""
        fmt = torch.channels_last if enabled else torch.contiguous_format
        self.module.to(memory_format=fmt)

    def batchnorm_folded(self, *, keep_layer: str | None = None) -> AbstractContextManager[None]:
        """A block in which each BatchNorm is folded into the convolution before it (see ``fold``), except
        where that convolution is ``keep_layer``, the layer being read."""
        if self._batchnorm_pairs is None:
            self._batchnorm_pairs = batchnorm_pairs(self.module)
        return batchnorm_folded(self.module, self._batchnorm_pairs, keep=keep_layer)

    def normalize(self, x01: torch.Tensor, *, in_box: bool = False) -> torch.Tensor:
        """Map a [0,1] batch to model input space; values outside [0,1] are clamped first.

        ``in_box=True``: the caller knows ``x01`` lies in [0, 1], so the clamp (the identity there, with
        gradient 1) is skipped; the inversion loop knows this of every projected iterate.
        """
        shift, inv_std = self._normalizer(x01)
        # (x - mean) / std as one addcmul, x * (1 / std) + (-mean / std)
        return torch.addcmul(shift, x01 if in_box else _clamp01(x01), inv_std)

    def _normalizer(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-mean/std and 1/std as (1, 3, H, W) tensors in the batch's memory layout. Why full size: a
        (1, 3, 1, 1) operand makes the CPU kernels walk a channels-last batch 3 values at a time (about 30x
        slower at 224 px than an operand of the batch's own shape)."""
        layout = torch.channels_last if x01.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        key = (x01.dtype, x01.device, tuple(x01.shape[2:]), layout)
        if key not in self._stats:
            if len(self._stats) >= 8:  # a handful of sizes per worker; never grow without bound
                self._stats.clear()
            mean = torch.tensor(self.mean, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
            full = (1, 3, *x01.shape[2:])
            self._stats[key] = tuple(t.expand(full).contiguous(memory_format=layout) for t in (-mean / std, 1.0 / std))
        return self._stats[key]

    def layer_names(self) -> list[str]:
        """Dotted names accepted by ``features`` (modules that run once per forward)."""
        if self._layers is None:  # probed once, with one small forward pass
            size = self.input_size if self.fixed_size else min(self.input_size, max(self.min_size, 64))
            probe = torch.full((1, 3, size, size), 0.5, device=self.device)  # small: names do not depend on size
            self._layers = tuple(probe_layers(self.module, self.normalize(probe)))
            modules = dict(self.module.named_modules())
            self._layer_modules = {name: modules[name] for name in self._layers}
        return list(self._layers)

    def check_layer(self, layer: str) -> None:
        """Raise ``ValueError`` (listing the valid names) unless ``layer`` is a valid layer name."""
        if self._layers is None:
            self.layer_names()
        layer_name_check(backbone=self.name, layer=layer, names=self._layers)

    def check_size(self, size: int) -> None:
        """Raise ``ValueError`` with a reason unless images of ``size`` px fit this model."""
        image_size_check(backbone=self.name, size=size, input_size=self.input_size, fixed_size=self.fixed_size,
                         min_size=self.min_size)

    def features(self, x01: torch.Tensor, layer: str | None = None, *, in_box: bool = False,
                 flat: bool = True) -> torch.Tensor:
        """Representation g(x) at ``layer`` (default: penultimate), shape (B, D).

        ``x01``: float (B, 3, H, W) in [0, 1] on ``self.device``. Normalisation
        happens here (``in_box``: see ``normalize``); the result is the layer output flattened per sample and
        keeps its autograd graph back to ``x01``. ``flat=False``: the layer's output as it comes, (B, ...) in
        its own memory layout (flattening a channels-last output copies it, forward and backward).
        """
        layer = self.default_layer if layer is None else layer
        if layer not in self._layer_modules:
            if layer == self.default_layer:  # trusted by the registry entry: no probe pass needed
                self._layer_modules[layer] = self.module.get_submodule(layer)
            else:
                self.check_layer(layer)
        out = extract(self.module, self._layer_modules[layer], self.normalize(x01, in_box=in_box))
        return out.flatten(1) if flat else out

    def classify(self, x01: torch.Tensor) -> torch.Tensor:
        """The classifier's logits (B, C) as float32 for a [0, 1] batch; ``ValueError`` without a classifier."""
        if not self.classifier:
            raise ValueError(f"Backbone '{self.name}' has no classifier of its own.")
        return self.module(self.normalize(x01)).float()


BackboneBuilder = Callable[[str | None], Backbone]
_BUILDERS: dict[str, BackboneBuilder] = {}
_ARCHITECTURES: dict[str, Architecture] = {}


def _unknown_backbone(name: str) -> ValueError:
    available = list_backbones()
    close = difflib.get_close_matches(name, available, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ValueError(f"Unknown backbone '{name}'. Available: {', '.join(available)}.{hint}")


def check_backbone_name(name: str) -> None:
    """Raise ``ValueError`` with a "did you mean" hint unless ``name`` is registered."""
    if name not in _BUILDERS:
        raise _unknown_backbone(name)


def register_backbone(architecture: Architecture) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator: register ``builder(weights_path) -> Backbone`` under ``architecture.name``, with the
    architecture as what is known of it without building it (``describe_backbone``).

    The builder may return the module in any mode on CPU; ``load_backbone``
    freezes it and moves it. Registering a name twice raises ``ValueError``.
    """
    name = architecture.name
    if name in _BUILDERS:
        raise ValueError(f"Backbone '{name}' is already registered.")

    def decorator(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _BUILDERS:
            raise ValueError(f"Backbone '{name}' is already registered.")
        _BUILDERS[name] = builder
        _ARCHITECTURES[name] = architecture
        return builder

    return decorator


def describe_backbone(name: str) -> Architecture:
    """The registered backbone ``name`` as static data, without building it (``ValueError`` with a hint when
    ``name`` is not registered)."""
    check_backbone_name(name)
    return _ARCHITECTURES[name]


def list_backbones() -> list[str]:
    return sorted(_BUILDERS)


def load_backbone(
    name: str, *, weights_path: str | None = None, device: str | torch.device = "cpu"
) -> Backbone:
    """Build (once per process) the named backbone, frozen, in eval mode, on ``device``.

    Cached on (name, weights_path, device) so a long-lived worker loads weights
    once; callers share the returned object and must not modify it.
    """
    check_backbone_name(name)
    return _load_cached(name, weights_path, str(torch.device(device)))


@functools.lru_cache(maxsize=None)
def _load_cached(name: str, weights_path: str | None, device: str) -> Backbone:
    backbone = _BUILDERS[name](weights_path)
    backbone.module.eval().requires_grad_(False).to(device)
    if weights_path is not None:
        backbone.checkpoint_sha256 = checkpoint_sha256(weights_path)
    return backbone


def layer_names(name: str) -> list[str]:
    """Valid ``layer`` values for backbone ``name`` (static data: nothing is built)."""
    return describe_backbone(name).layer_names()


def stage_names(name: str) -> list[str]:
    """The layers a layer sweep of backbone ``name`` usually takes (its ``stages``: each main block's
    output, shallow to deep, ending with the default layer); any of ``layer_names(name)`` may be swept."""
    return describe_backbone(name).stage_names()


# The architectures register themselves (register_backbone) when their module is imported: here, so that importing
# the registry is enough to find them.
from . import architectures  # noqa: E402, F401
