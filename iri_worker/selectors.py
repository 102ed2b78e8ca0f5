from .models import Checkpoint, IriChunk, IriImage, IriJob, TargetPhoto


def target_photo_list(*, ids: list[int] | None = None):
    qs = TargetPhoto.objects.select_related("image")
    return qs.filter(pk__in=ids) if ids is not None else qs


def checkpoint_get(*, checkpoint_id: int) -> Checkpoint | None:
    return Checkpoint.objects.filter(pk=checkpoint_id).first()


def iri_job_get(*, job_id: int) -> IriJob | None:
    return IriJob.objects.filter(pk=job_id).first()


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
