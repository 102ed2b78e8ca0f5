from .models import IriImage, IriJob, TargetPhoto


def target_photo_list(*, ids: list[int] | None = None):
    qs = TargetPhoto.objects.select_related("image")
    return qs.filter(pk__in=ids) if ids is not None else qs


def iri_job_get(*, job_id: int) -> IriJob | None:
    return IriJob.objects.filter(pk=job_id).first()


def iri_image_list(*, job: IriJob):
    return IriImage.objects.filter(job=job).select_related("target", "image", "seed", "target_image")
