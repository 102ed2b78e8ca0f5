"""Factories for the rows most tests need, so that only the tests about IRI jobs run the engine.

An IRI set is made by the engine once per test process and inputs (spec, photos), and recorded: its images' PNG
bytes, losses, proxies, validity records and chunk records. A later IRI set of the same inputs is written from the
recording by factories: the same rows the engine would write (images are content-addressed, so even the same
files), in a millisecond instead of half a second. Tests under tests/iri_worker/ always run the engine.
"""
import functools
import json

import factory
from django.core.files.storage import default_storage
from django.utils import timezone
from factory.django import DjangoModelFactory

from iri_worker.demo_photos import bundled_photos
from iri_worker.models import IriChunk, IriImage, IriJob, StoredImage, TargetPhoto
from iri_worker.services import iri_job_run, photo_png_bytes, stored_image_save

# Set to False (tests/iri_worker/conftest.py) to run the engine for every IRI set.
REPLAY = True
_recordings: dict[str, dict] = {}


@functools.cache
def _bundled_targets() -> tuple[tuple[str, tuple[bytes, int, int]], ...]:
    """The bundled photos as target_photo_create stores them (decoded, fitted, PNG): once per process."""
    return tuple((name, photo_png_bytes(data=data)) for name, data in bundled_photos().items())


class TargetPhotoFactory(DjangoModelFactory):
    """One of the bundled photos (by position) as a target photo: the row target_photo_create would write."""

    class Meta:
        model = TargetPhoto
        exclude = ("photo",)

    photo = 0
    name = factory.LazyAttribute(lambda o: _bundled_targets()[o.photo][0])
    image = factory.LazyAttribute(lambda o: _bundled_stored(o.photo))


def _bundled_stored(position: int) -> StoredImage:
    png, width, height = _bundled_targets()[position][1]
    return stored_image_save(png_bytes=png, width=width, height=height)


class IriJobFactory(DjangoModelFactory):
    class Meta:
        model = IriJob

    name = "tiny set"
    status = IriJob.Status.DONE
    progress = 1.0
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)


class IriChunkFactory(DjangoModelFactory):
    class Meta:
        model = IriChunk

    status = IriChunk.Status.DONE
    attempts = 1
    progress = 1.0
    started_at = factory.LazyFunction(timezone.now)
    heartbeat_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)


class IriImageFactory(DjangoModelFactory):
    class Meta:
        model = IriImage


def iri_set_make(*, photos, spec: dict, name: str = "tiny set") -> IriJob:
    """A finished IRI set of these photos: from the engine the first time these inputs are seen, else replayed."""
    key = json.dumps([spec, [(p.image.sha256, p.label) for p in photos]], sort_keys=True)
    if REPLAY and key in _recordings:
        return _replay(_recordings[key], photos=photos, spec=spec, name=name)
    job = IriJob.objects.create(team=photos[0].team, name=name, spec=spec)
    job.targets.set(photos)
    iri_job_run(job_id=job.pk)
    job.refresh_from_db()
    if job.status == IriJob.Status.DONE:
        _recordings[key] = _record(job, photos)
    return job


def _fields(row, *, leave_out: set[str]) -> dict:
    return {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields if f.name not in leave_out}


def _stored(image: StoredImage) -> dict:
    with default_storage.open(image.file.name, "rb") as fh:
        return {"png_bytes": fh.read(), "width": image.width, "height": image.height}


def _record(job: IriJob, photos) -> dict:
    position = {photo.pk: i for i, photo in enumerate(photos)}
    timestamps = {"id", "team", "name", "spec", "created_at", "started_at", "finished_at", "heartbeat_at"}
    return {
        "job": _fields(job, leave_out=timestamps),
        "chunks": [{**_fields(chunk, leave_out=timestamps | {"job", "target_ids"}),
                    "targets": [position[pk] for pk in chunk.target_ids]} for chunk in job.chunks.order_by("index")],
        "images": [{**_fields(iri, leave_out={"id", "job", "target", "seed", "image", "target_image"}),
                    "target": position[iri.target_id], "seed": _stored(iri.seed), "image": _stored(iri.image),
                    "target_image": _stored(iri.target_image)} for iri in job.images.all()],
    }


def _replay(recording: dict, *, photos, spec: dict, name: str) -> IriJob:
    job = IriJobFactory(team=photos[0].team, name=name, spec=spec, **recording["job"])
    job.targets.set(photos)
    for chunk in recording["chunks"]:
        targets = [photos[i].pk for i in chunk["targets"]]
        IriChunkFactory(job=job, target_ids=targets, **{k: v for k, v in chunk.items() if k != "targets"})
    for iri in recording["images"]:
        stored = {role: stored_image_save(**iri[role]) for role in ("seed", "image", "target_image")}
        values = {k: v for k, v in iri.items() if k not in {"target", *stored}}
        IriImageFactory(job=job, target=photos[iri["target"]], **stored, **values)
    return job
