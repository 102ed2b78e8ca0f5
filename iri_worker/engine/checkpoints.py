"""Weights files: their SHA-256, a safe read (``weights_only``), and fitting a checkpoint's state dict to a model
(MadryLab, SimCLR-style or plain layouts). Only local files; never a download."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping

import torch
from torch import nn

__all__ = [
    "checkpoint_sha256",
    "read_checkpoint",
    "unwrap_state_dict",
    "fit_state_dict",
    "load_state_dict_file",
]


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
