"""A timed classification survey's build: one main trial per IRI whose options are the categories, natural photos
of those categories for practice, screening and catch trials, and a fresh noise mask for every trial."""
from __future__ import annotations

import hashlib
import io
import random

import numpy as np
from PIL import Image

from backend.exceptions import ApplicationError
from iri_worker.models import IriImage, StoredImage, TargetPhoto
from iri_worker.services import stored_image_save

from ...models import Survey, Trial
from ...services.building import class_of, common_size, lists_build, lists_store, survey_built
from ...stimuli import image_size, stored_image_bytes, stored_image_fitted

NATURAL_TOO_FEW = (
    "{field}: {n} natural photos labelled with the survey's categories ({categories}) and not among its target photos "
    "are needed; the team has {found}. Add labelled target photos, or ask for fewer."
)


def classification_build(*, survey: Survey, iris: list[IriImage], rng: random.Random, report: dict) -> Survey:
    """A timed classification survey (Feather et al. 2023): one main trial per IRI, its options the categories
    (the target photos' labels, sorted), the right one its target's; practice, screening and catch trials show
    natural photos of those categories that are not among the survey's targets, fitted to the IRIs' size; every
    trial has its own noise mask of its image's size (Masks). Lists and slots as for 2AFC."""
    labels: dict[str, str] = {}
    for iri in sorted(iris, key=lambda i: i.target.label.strip()):
        labels.setdefault(class_of(iri), iri.target.label.strip())
    keys = sorted(labels)
    categories = [labels[k] for k in keys]
    masks = Masks(rng=rng, survey=survey)
    main = [
        Trial(survey=survey, iri=iri, query=iri.image, mask=masks.of(image_size(iri.image)), n_options=len(keys),
              target_option=keys.index(class_of(iri)), task_type=survey.task_type)
        for iri in iris
    ]
    rng.shuffle(main)
    size = common_size([t.query for t in main])
    photos = _natural_photos(survey=survey, iris=iris, keys=keys, rng=rng)

    def natural(kind: str, count: int, trial_list, source: list) -> list[Trial]:
        return [
            Trial(survey=survey, trial_list=trial_list, kind=kind, task_type=survey.task_type,
                  query=stored_image_fitted(data=stored_image_bytes(photo.image), size=size), mask=masks.of(size),
                  n_options=len(keys), target_option=keys.index(photo.label.strip().casefold()), foil_kind="photo")
            for photo in (source[k % len(source)] for k in range(count))
        ]

    # Practice (with feedback) and screening never share a photo: feedback must not teach the screening answers.
    practice_photos = photos[: max(1, len(photos) // 2)] if survey.screening_trials else photos
    screening_photos = photos[len(practice_photos):] if survey.practice_trials else photos
    for field, count, source in (("practice_trials", survey.practice_trials, practice_photos),
                                 ("screening_trials", survey.screening_trials, screening_photos),
                                 ("catch_trials", survey.catch_trials, photos)):
        if count and not source:
            raise ApplicationError(NATURAL_TOO_FEW.format(field=field, n=1 + (field == "screening_trials" and bool(survey.practice_trials)),
                                                          categories=", ".join(categories), found=len(photos)),
                                   extra={"field": field})
    lists = lists_build(survey=survey, units=[[t] for t in main])
    lists_store(survey=survey, lists=lists, catch_for=lambda trial_list, rows: natural(Trial.Kind.CATCH, survey.catch_trials, trial_list, photos))
    Trial.objects.bulk_create(natural(Trial.Kind.PRACTICE, survey.practice_trials, None, practice_photos)
                              + natural(Trial.Kind.SCREENING, survey.screening_trials, None, screening_photos))
    report.update(categories=categories, natural_photos=len(photos),
                  masks={"noise": "uniform RGB", "per": "trial", "count": len(masks.made), "seed": masks.seed})
    return survey_built(survey=survey, lists=lists, build_report=report, categories=categories)


class Masks:
    """Noise masks (uniform RGB noise, PNG): a fresh one for every trial, so no participant sees a mask twice.

    A mask shared by two trials would link them (the same photo's IRIs at two layers would share their answer);
    one per trial identifies that trial only, as its query does. The noise is seeded by the survey's seed and its
    slug, so a rebuild makes the same masks while two surveys (even of one seed) share none; each trial records
    its mask (Trial.mask)."""

    def __init__(self, *, rng: random.Random, survey: Survey):
        # 48 bits: the recorded seed stays exact in JavaScript's numbers
        self.seed = int.from_bytes(hashlib.sha256(f"{survey.slug}:{rng.getrandbits(32)}".encode()).digest()[:6])
        self.rng = np.random.default_rng(self.seed)
        self.made: set[int] = set()

    def of(self, size: tuple[int, int]) -> StoredImage:
        mask = self._noise(size)
        while mask.pk in self.made:  # the same noise twice: never in practice, but it would link two trials
            mask = self._noise(size)
        self.made.add(mask.pk)
        return mask

    def _noise(self, size: tuple[int, int]) -> StoredImage:
        pixels = self.rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG")
        return stored_image_save(png_bytes=out.getvalue(), width=size[0], height=size[1])


def _natural_photos(*, survey: Survey, iris: list[IriImage], keys: list[str], rng) -> list[TargetPhoto]:
    """The team's labelled photos of the survey's categories that are not among its targets, in a seeded order."""
    targets = {i.target_id for i in iris}
    photos = [
        p for p in TargetPhoto.objects.filter(team_id=survey.team_id).exclude(pk__in=targets).exclude(label=None)
        .select_related("image").order_by("pk")
        if p.label.strip().casefold() in keys
    ]
    rng.shuffle(photos)
    return photos
