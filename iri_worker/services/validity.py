"""Run on workers after a chunk's inversion: each IRI's validity record against the job's null distribution
(cached and shared between workers), and the perceptual proxies (8-bit images, as stored and shown)."""
import hashlib
import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import IntegrityError, transaction

from ..models import IriJob, NullDistribution, StoredImage, TargetPhoto
from ..validity_record import NullSummary, ValidityRecord
from .storage import _read_rgb

logger = logging.getLogger(__name__)

# Photos in a null distribution's pool (the job's targets first, then others by sha256): 128 photos give 16,256
# ordered pairs to draw NULL_PAIRS from, and cost a first job on 2 CPU cores under 10 % of the demo's run
# (decoding the photos and 128 forward passes; bench/validity.py).
NULL_POOL_MAX = 128
NULL_SEED = 0  # the generator that draws the pairs when the pool has more than engine.validity.NULL_PAIRS
NULL_VERSION = 1  # bump when the null's definition changes: old cached rows are then never reused


def _null_pool(*, job: IriJob) -> list[StoredImage]:
    """The photos whose pairs make the job's null: its targets and the team's other target photos that existed when
    the job was created (fixed per job, whichever worker asks), at most NULL_POOL_MAX, distinct, by sha256."""
    own = list(StoredImage.objects.filter(pk__in=job.targets.values("image_id")).order_by("sha256")[:NULL_POOL_MAX])
    room = NULL_POOL_MAX - len(own)
    others = []
    if room > 0:
        earlier = TargetPhoto.objects.filter(team_id=job.team_id, created_at__lte=job.created_at).values("image_id")
        others = list(StoredImage.objects.filter(pk__in=earlier).exclude(pk__in=[i.pk for i in own])
                      .order_by("sha256")[:room])
    return sorted(own + others, key=lambda image: image.sha256)


def null_distribution_get(*, job: IriJob, spec, backbone, device: str) -> tuple[NullDistribution, bool]:
    """The job's null distribution and whether it was cached: representation distances between unrelated
    photos (engine.validity), at the job's backbone, checkpoint, layer and image size, over its photo pool.

    Cached in NullDistribution by a hash of all of those, so workers share it and a later job with the same
    settings and pool reuses it. Pool photos are preprocessed exactly as targets are (photo_to_tensor)."""
    import torch

    from iri_worker import engine

    pool = _null_pool(job=job)
    layer = spec.layer or backbone.default_layer
    size = spec.image_size or backbone.input_size
    identity = {
        "version": NULL_VERSION, "backbone": spec.backbone, "checkpoint_sha256": spec.checkpoint_sha256 or "",
        "layer": layer, "image_size": size, "pool": [image.sha256 for image in pool],
        "pairs": engine.validity.NULL_PAIRS, "seed": NULL_SEED,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    found = NullDistribution.objects.filter(key=key).first()
    if found is not None:
        return found, True
    started = time.monotonic()

    def load(image: StoredImage):
        try:
            return engine.photo_to_tensor(_read_rgb(image), size)
        except (OSError, ValueError) as exc:  # a missing or broken file leaves the pool, never fails the job
            logger.warning("null distribution: photo %s left out (%s)", image.sha256[:12], exc)
            return None

    # PIL decodes and resizes outside the GIL: a few threads divide the wall time
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as threads:
        loaded = list(threads.map(load, pool))
    tensors = [t for t in loaded if t is not None]
    used = [image.sha256 for image, t in zip(pool, loaded) if t is not None]
    images = torch.stack(tensors) if tensors else torch.zeros(0, 3, size, size)
    reps = engine.validity.representations(backbone, images, layer=layer)
    pairs = engine.validity.null_pairs(len(used), max_pairs=engine.validity.NULL_PAIRS, seed=NULL_SEED)
    distances = engine.validity.null_distances(reps, pairs)
    null = NullDistribution(
        key=key, backbone=spec.backbone, checkpoint_sha256=spec.checkpoint_sha256 or "", layer=layer,
        image_size=size, pool=used, distances=[float(d) for d in distances.tolist()],
        seconds=round(time.monotonic() - started, 3),
    )
    if len(used) < len(pool):  # not the pool the key names: use it for this chunk, cache nothing
        return null, False
    try:
        with transaction.atomic():
            null.save()
    except IntegrityError:  # another worker stored the same one meanwhile
        return NullDistribution.objects.get(key=key), True
    return null, False


def _signif(value: float, digits: int = 6) -> float | None:
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def iri_validity_compute(
    *, job: IriJob, spec, backbone, device: str, iris, targets, curve
) -> tuple[list[ValidityRecord], bool]:
    """Each IRI's validity record (stored as IriImage.validity) and whether the null came from the cache.

    The IRI is judged as stored (8-bit); its distance to its target is the loss's representation term at the
    run's layer, in float32 without transform; its percentile is in the job's null distribution. ``curve`` is
    [(step, (B,) losses)] as collected from on_step: read back to the host here, once."""
    import torch

    from iri_worker import engine

    v = engine.validity
    null, cached = null_distribution_get(job=job, spec=spec, backbone=backbone, device=device)
    layer = spec.layer or backbone.default_layer
    shown = engine.eight_bit(iris).cpu()
    n = shown.shape[0]
    both = torch.cat([shown, targets.float().cpu()])
    reps = v.representations(backbone, both, layer=layer)
    distances = v.relative_distances(reps[:n], reps[n:])
    null_values = torch.tensor(null.distances, dtype=torch.float64)
    percentiles = v.null_percentiles(distances, null_values)
    labels = v.top1_labels(backbone, both)
    names = backbone.label_names
    losses = torch.stack([loss.detach().float() for _, loss in curve]).cpu() if curve else torch.zeros(0, n)
    steps = [step for step, _ in curve]
    summary = NullSummary(key=null.key, layer=layer, pairs=len(null.distances), photos=len(null.pool),
                          median=_signif(null_values.median()) if null_values.numel() else None,
                          min=_signif(null_values[0]) if null_values.numel() else None)
    records = []
    for i in range(n):
        labelled = {}
        if labels is not None:
            mine, theirs = int(labels[i]), int(labels[n + i])
            labelled = {"label_match": mine == theirs, "iri_label": mine, "target_label": theirs}
            if names is not None and max(mine, theirs) < len(names):
                labelled.update(iri_label_name=names[mine], target_label_name=names[theirs])
        records.append(ValidityRecord(
            distance=_signif(distances[i]),
            percentile=None if math.isnan(percentiles[i]) else round(float(percentiles[i]), 3),
            null=summary,
            loss_curve=[[s, _signif(losses[k, i])] for k, s in enumerate(steps)],
            **labelled,
        ))
    return records, cached


_PROXY_UNAVAILABLE: set[str] = set()


def iri_proxy_compute(*, iris, targets, seeds) -> list[dict]:
    """Per image {metric: {"to_target": d, "to_seed": d, "aligned": d_to_target <= d_to_seed}} for every
    metric the engine can compute here (LPIPS only where its weights are present), on 8-bit images."""
    from iri_worker import engine

    out: list[dict] = [{} for _ in range(iris.shape[0])]
    # Judge the images as stored and shown: 8-bit.
    iris, targets, seeds = (engine.eight_bit(t).cpu() for t in (iris, targets, seeds))
    for metric in [m for m in engine.PROXY_METRICS if m not in _PROXY_UNAVAILABLE]:
        try:
            result = engine.proxy_alignment(iris, targets, seeds, metric)
        except RuntimeError as exc:  # e.g. LPIPS without its backbone weights on this machine
            logger.info("proxy %s unavailable: %s", metric, exc)
            _PROXY_UNAVAILABLE.add(metric)
            continue
        for i in range(iris.shape[0]):
            out[i][metric] = {"to_target": round(float(result["to_target"][i]), 6),
                              "to_seed": round(float(result["to_seed"][i]), 6),
                              "aligned": bool(result["aligned"][i])}
    return out
