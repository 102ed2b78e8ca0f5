"""Validity gates for IRIs (Feather et al. 2023's model metamers): is an IRI really identically represented?

An IRI's distance to its own target is worth something only next to the distance between two images that
have nothing to do with each other. So:

* the **null distribution**: the representation distance of the loss, d(x, x_t) = ||g(x) - g(x_t)||_2 /
  ||g(x_t)||_2 at the run's layer (no regulariser, no random transform), between unrelated photos: ordered
  pairs (a, b), a != b, of a pool of photos, b playing the target; all pairs when there are at most
  ``max_pairs``, else ``max_pairs`` of them drawn without replacement from a generator with a fixed seed;
* the IRI's **percentile** in it: the share (in %) of null distances <= the IRI's distance to its target.
  0 = closer to its target than any two unrelated photos are to each other (a valid IRI); lower is better;
* the **label check**, where the backbone has a classifier: its top-1 class of the IRI and of the target;
* the **loss curve**: which steps of a run to keep (``loss_curve_steps``); the caller collects the losses
  the loop passes to ``on_step`` at those steps (no extra host reads in the loop).

Pure torch: features in, numbers out. Every forward pass is batched and runs without autograd, in the
backbone's preferred memory layout, with its BatchNorms folded as ``invert`` runs it (same function).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from .backbones import Backbone
from .losses import _relative_gap

__all__ = [
    "NULL_PAIRS",
    "LOSS_CURVE_POINTS",
    "representations",
    "relative_distances",
    "null_pairs",
    "null_distances",
    "null_percentiles",
    "top1_labels",
    "loss_curve_steps",
]

NULL_PAIRS = 2000  # ordered pairs in a null distribution (all of them when the pool has fewer)
LOSS_CURVE_POINTS = 40  # (step, loss) points kept per run
# Images per forward pass: on the CPU small batches ran fastest (Lite0 at 128 px, 2 cores: 8 -> 0.8 s for 256
# images, 64 -> 1.4 s); a GPU wants large ones.
_BATCH = {"cpu": 8, "cuda": 64}
_PAIR_ELEMENTS = 1 << 24  # floats per block of pair differences (64 MB in float32)


@contextmanager
def _evaluating(backbone: Backbone, layer: str | None):
    """No autograd, the backbone's preferred layout, BatchNorms folded (except into ``layer``)."""
    backbone.set_channels_last(backbone.channels_last)
    with torch.no_grad(), backbone.batchnorm_folded(keep_layer=layer):
        yield


def _batches(backbone: Backbone, images: torch.Tensor, batch_size: int | None):
    dev = backbone.device
    size = batch_size or _BATCH.get(dev.type, _BATCH["cuda"])
    fmt = torch.channels_last if backbone.channels_last else torch.contiguous_format
    for start in range(0, images.shape[0], size):
        yield images[start:start + size].to(dev, torch.float32).contiguous(memory_format=fmt)


def representations(backbone: Backbone, images: torch.Tensor, *, layer: str | None = None,
                    batch_size: int | None = None) -> torch.Tensor:
    """g(x) at ``layer`` (default: the backbone's) for (N, 3, S, S) images in [0, 1]: float32 (N, D) on CPU.

    Forward passes of ``batch_size`` images (default: 8 on the CPU, 64 on a GPU) on the backbone's device,
    without autograd, in float32 (no autocast), no transform: the representation term of the loss as an
    evaluation.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, S, S), got {tuple(images.shape)}")
    layer = layer if layer is not None else backbone.default_layer
    with _evaluating(backbone, layer):
        out = [backbone.features(batch, layer).float().cpu() for batch in _batches(backbone, images, batch_size)]
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)


def relative_distances(reps: torch.Tensor, target_reps: torch.Tensor) -> torch.Tensor:
    """Row-wise ||reps - target_reps||_2 / ||target_reps||_2, (N,): the loss's representation term."""
    if reps.shape != target_reps.shape:
        raise ValueError(f"shapes differ: {tuple(reps.shape)} vs {tuple(target_reps.shape)}")
    return _relative_gap(reps.float(), target_reps)


def null_pairs(n: int, *, max_pairs: int = NULL_PAIRS, seed: int = 0) -> torch.Tensor:
    """Ordered pairs (i, j), i != j, of ``n`` items as a (P, 2) long tensor.

    All n(n-1) of them (in row-major order) when that is at most ``max_pairs``; otherwise ``max_pairs``
    distinct pairs drawn from ``torch.Generator().manual_seed(seed)``, the same on every machine.
    """
    if n < 0 or max_pairs < 1:
        raise ValueError(f"need n >= 0 and max_pairs >= 1 (got n={n}, max_pairs={max_pairs})")
    if n < 2:
        return torch.zeros(0, 2, dtype=torch.long)
    total = n * (n - 1)
    if total <= max_pairs:
        flat = torch.arange(total)
    else:
        flat = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:max_pairs].sort().values
    first = flat // (n - 1)
    rest = flat % (n - 1)
    second = rest + (rest >= first).long()  # skip the diagonal
    return torch.stack([first, second], dim=1)


def null_distances(reps: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """d(reps[i], reps[j]) for each pair (i, j) (j plays the target), sorted ascending, float64 (P,).

    Computed in blocks of pairs so a wide layer (D in the tens of thousands) never needs P x D floats.
    """
    if pairs.numel() == 0:
        return torch.zeros(0, dtype=torch.float64)
    width = max(1, reps.shape[1])
    block = max(1, _PAIR_ELEMENTS // width)
    parts = [
        relative_distances(reps[chunk[:, 0]], reps[chunk[:, 1]])
        for chunk in pairs.split(block)
    ]
    return torch.cat(parts).double().sort().values


def null_percentiles(distances: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """Per distance, the share in % (0-100) of ``null`` that is <= it (ties count against the IRI).

    ``null`` need not be sorted. NaN where ``null`` is empty or the distance is not finite.
    """
    distances = torch.as_tensor(distances, dtype=torch.float64).reshape(-1)
    null = torch.as_tensor(null, dtype=torch.float64).reshape(-1).sort().values
    if null.numel() == 0:
        return torch.full_like(distances, math.nan)
    below = torch.searchsorted(null, distances.contiguous(), right=True).double()
    share = 100.0 * below / null.numel()
    return torch.where(torch.isfinite(distances), share, torch.full_like(share, math.nan))


def top1_labels(backbone: Backbone, images: torch.Tensor, *, batch_size: int | None = None) -> torch.Tensor | None:
    """The backbone classifier's top-1 class per image, long (N,) on CPU; None where it has no classifier."""
    if not backbone.classifier:
        return None
    with _evaluating(backbone, None):
        out = [backbone.classify(batch).argmax(dim=1).cpu() for batch in _batches(backbone, images, batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def loss_curve_steps(steps: int, points: int = LOSS_CURVE_POINTS) -> list[int]:
    """About ``points`` step indices (0-based, as ``on_step`` numbers them), evenly spread from the first
    step to the last, both included; every step when there are fewer."""
    if steps <= 0:
        return []
    if steps <= points:
        return list(range(steps))
    return sorted({round(k * (steps - 1) / (points - 1)) for k in range(points)})
