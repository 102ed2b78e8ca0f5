import decimal
import numbers
import statistics

from backend.exceptions import ApplicationError

from .models import IriChunk, IriImage, IriJob
from .validity_record import ValidityRecord

# Why an IRI fails the validity filter a survey may set (iri_validity_failure); the record itself is
# IriImage.validity (iri_worker.validity_record), written by the worker with the image.
VALIDITY_REASONS = {
    "percentile_above_threshold": (
        "The IRI's representation distance to its target lies above the chosen percentile of the null "
        "distribution (distances between unrelated photos): the network does not see it as its target."
    ),
    "label_mismatch": "The network's classifier gives the IRI another top-1 label than its target.",
    "no_validity_record": (
        "The IRI has no validity record (made before records existed, or the record failed), or the record "
        "lacks what the filter needs: no null distribution (fewer than two photos) for a percentile "
        "threshold, no classifier in the network for the label check."
    ),
}
MAX_PERCENTILE_RANGE = "max_percentile must be a number from 0 to 100 (a percentile of the null distribution), got {value!r}."


def iri_image_list(*, job: IriJob):
    return IriImage.objects.filter(job=job).select_related("target", "image", "seed", "target_image")


def iri_chunk_list(*, job: IriJob):
    return IriChunk.objects.filter(job=job).order_by("index")


def iri_job_proxy_summary(*, job: IriJob) -> dict:
    """Per metric: how many of the set's IRIs are closer to their target than to their seed
    (the paper's automated alignment), {"ssim": {"aligned": k, "n": n, "share": k / n}, ...}."""
    summary: dict[str, dict] = {}
    for proxy in IriImage.objects.filter(job=job).values_list("proxy", flat=True):
        for metric, value in (proxy or {}).items():
            entry = summary.setdefault(metric, {"aligned": 0, "n": 0})
            entry["n"] += 1
            entry["aligned"] += bool(value.get("aligned"))
    for entry in summary.values():
        entry["share"] = round(entry["aligned"] / entry["n"], 4) if entry["n"] else None
    return summary


def validity_threshold_check(value) -> float | None:
    """A survey's ``max_percentile`` as a float in [0, 100] (None: no threshold); ApplicationError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, decimal.Decimal)) or not 0 <= value <= 100:
        raise ApplicationError(MAX_PERCENTILE_RANGE.format(value=value), extra={"field": "max_percentile"})
    return float(value)


def iri_validity_failure(*, iri: IriImage, max_percentile: float | None, require_label_match: bool) -> str | None:
    """None when the IRI passes the survey's validity filter, else the first reason (a key of VALIDITY_REASONS).

    ``max_percentile``: keep IRIs whose percentile in the null distribution is <= it (None: no threshold);
    ``require_label_match``: keep IRIs the network labels like their target."""
    max_percentile = validity_threshold_check(max_percentile)
    if max_percentile is None and not require_label_match:
        return None
    record = ValidityRecord.from_dict(iri.validity or {})
    if max_percentile is not None:
        if record.percentile is None:
            return "no_validity_record"
        if record.percentile > max_percentile:
            return "percentile_above_threshold"
    if require_label_match:
        if record.label_match is None:
            return "no_validity_record"
        if not record.label_match:
            return "label_mismatch"
    return None


def iri_job_validity_summary(*, job: IriJob) -> dict:
    """The set's validity at a glance: {"n", "with_record", "median_percentile", "max_percentile",
    "label_matches", "label_checked"} (None where nothing to summarise)."""
    stored = IriImage.objects.filter(job=job).values_list("validity", flat=True)
    records = [ValidityRecord.from_dict(v or {}) for v in stored]
    percentiles = sorted(r.percentile for r in records if r.percentile is not None)
    checked = [r.label_match for r in records if r.label_match is not None]
    return {
        "n": len(records),
        "with_record": sum(1 for r in records if r.made),
        "median_percentile": statistics.median(percentiles) if percentiles else None,
        "max_percentile": percentiles[-1] if percentiles else None,
        "label_matches": sum(checked) if checked else None,
        "label_checked": len(checked),
    }


def iri_job_record(*, job: IriJob) -> dict:
    """Everything needed to reproduce the job's images: the engine spec (backbone, layer, recipe with its
    weights, parametrisation, transforms, step rule, steps, RNG seed, ...), the checkpoint's hash, the
    seed photo, device options, library versions, and per chunk the device and any adaptive weight."""
    checkpoint = job.checkpoint
    return {
        "spec": job.spec,
        "checkpoint": (
            {"id": checkpoint.pk, "name": checkpoint.name, "backbone": checkpoint.backbone, "sha256": checkpoint.sha256}
            if checkpoint else None
        ),
        "seed_photo": (
            {"id": job.seed_photo_id, "sha256": job.seed_photo.image.sha256} if job.seed_photo_id else None
        ),
        "chunk_size": job.chunk_size,
        # measured once for the job, on its first batch at the first step; every chunk used it
        "adaptive_c": job.adaptive_c,
        "versions": job.versions,
        "chunks": [
            {"index": c.index, "targets": c.target_ids, "status": c.status, **c.details}
            for c in IriChunk.objects.filter(job=job).order_by("index")
        ],
    }
