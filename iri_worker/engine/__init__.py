"""IRI engine: pure PyTorch generation of identically represented inputs.

Starting from a seed image x0, descend on pixels until the representation g(x)
of a backbone at some layer matches g(x_t) of a target photo x_t.

This package imports only torch, torchvision, numpy and PIL (never Django or
sibling apps), writes no files and prints nothing. The Django side uses only
the names below: a JSON-able spec goes in, tensors and per-image numbers come out.
"""

from . import losses
from .backbones import Backbone, layer_names, list_backbones, load_backbone, register_backbone
from .images import png_bytes_to_tensor, photo_to_tensor, tensor_to_png_bytes
from .invert import InversionResult, invert
from .recipes import RECIPES, build_loss
from .seeds import SEED_KINDS, make_seed
from .spec import InversionSpec

__all__ = [
    "InversionSpec",
    "InversionResult",
    "invert",
    "register_backbone",
    "list_backbones",
    "load_backbone",
    "layer_names",
    "Backbone",
    "SEED_KINDS",
    "RECIPES",
    "build_loss",
    "make_seed",
    "photo_to_tensor",
    "tensor_to_png_bytes",
    "png_bytes_to_tensor",
    "losses",
]
