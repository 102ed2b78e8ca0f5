"""Clustering / matching: screens of three reference photos and six IRIs; match each IRI to its reference."""
from __future__ import annotations

import io
import itertools
import random
import secrets
from dataclasses import dataclass

import numpy as np
from PIL import Image

from backend.exceptions import ApplicationError
from iri_worker.models import IriImage, StoredImage

from ..models import DEFAULT_TEXTS, Survey, Trial
from ..services.building import apart_group, obvious_build
from ..stimuli import PhotoPool
from .base import SurveyDesign, TaskType, option
from .registry import task_type_register

NEEDS_CLUSTER_TARGETS = (
    "Clustering needs at least 3 target photos with 2 IRIs each (choose two IRI sets made from the same targets, "
    "or one set with two seeds per target)."
)
MIXED_SIZES_CLUSTER = "A clustering screen shows six IRIs at once, so its sets must share one image size; these differ: {sets}."
CLUSTER_REFERENCES = 3
CLUSTER_IRIS_PER_REFERENCE = 2


@dataclass(frozen=True, kw_only=True)
class ClusterDesign(SurveyDesign):
    cluster_variant: str = option(Survey.ClusterVariant.RANDOM.value, choices=Survey.ClusterVariant,
                                  help="How each screen's three reference photos are chosen.")


class Clustering(TaskType):
    name = "cluster"
    label = "Clustering / matching (3 references, 6 IRIs)"
    design = ClusterDesign
    texts = DEFAULT_TEXTS["cluster"]
    description = ("For each screen, look at reference images and match each of several images to the reference it "
                   "belongs with.")
    screen_positions = 3
    kappa_categories = ("chose_right_reference", "chose_other_reference")

    def check(self, *, iris: list[IriImage], design: ClusterDesign, size_names: str | None) -> None:
        if size_names:
            raise ApplicationError(MIXED_SIZES_CLUSTER.format(sets=size_names), extra={"field": "iri_jobs"})
        per_target: dict[int, list[IriImage]] = {}
        for iri in iris:
            per_target.setdefault(iri.target_id, []).append(iri)
        if sum(len(v) >= CLUSTER_IRIS_PER_REFERENCE for v in per_target.values()) < CLUSTER_REFERENCES:
            raise ApplicationError(NEEDS_CLUSTER_TARGETS)

    def build(self, *, survey: Survey, iris: list[IriImage], rng: random.Random, pool: PhotoPool, report: dict) -> Survey:
        units = _cluster_screens(survey=survey, iris=iris, rng=rng)
        return obvious_build(survey=survey, units=units, pool=pool, report=report, screens=_obvious_screen)

    def plan_parts(self, survey: Survey) -> dict:
        return {"cluster_variant": survey.cluster_variant}

    def main_order(self, *, rows: list, rng: random.Random) -> list[int]:
        """Screens in random order, the rows within a screen shuffled."""
        screens: dict[str, list[int]] = {}
        for t in rows:
            screens.setdefault(t.screen, []).append(t.id)
        keys = list(screens)
        rng.shuffle(keys)
        order = []
        for key in keys:
            rng.shuffle(screens[key])
            order += screens[key]
        return order

    def screen_add(self, *, out: dict, trial, shown: list[int], url) -> None:
        """A row per IRI; the references of one screen share their URLs, and the screen lists its rows."""
        practice = trial.kind == Trial.Kind.PRACTICE
        options = [url(image_id, f"{trial.screen}.{k}") for k, image_id in enumerate(shown)]
        entry = {"id": trial.public_id, "query": url(trial.query_id, f"{trial.public_id}.q"), "options": options,
                 "screen": trial.screen}
        screens = out["practice_screens" if practice else "screens"]
        screen = next((s for s in reversed(screens) if s["id"] == trial.screen), None)  # rows of a screen are together
        if screen is None:
            screen = {"id": trial.screen, "references": options, "items": []}
            screens.append(screen)
        screen["items"].append(trial.public_id)
        out["practice" if practice else "trials"].append(entry)


def colour_histogram(image: StoredImage, bins: int = 8) -> np.ndarray:
    """A normalised RGB histogram (bins³ cells) of a stored PNG: the cheap similarity for 'hard' clustering."""
    with image.file.open("rb") as f:
        pixels = np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB").resize((64, 64)))
    q = (pixels // (256 // bins)).reshape(-1, 3).astype(np.int64)
    hist = np.bincount(q[:, 0] * bins * bins + q[:, 1] * bins + q[:, 2], minlength=bins**3).astype(float)
    return hist / hist.sum()


def cluster_triples(*, targets: list, variant: str, rng: random.Random, histogram=colour_histogram) -> list[tuple]:
    """Group target photos into triples of references. 'hard': greedily the triple with the smallest summed
    L1 distance between colour histograms (the most alike-looking references), then the next among the rest;
    'random': a shuffled split. Without class labels this is the stand-in for 'references from the same class'."""
    targets = list(targets)
    if variant == Survey.ClusterVariant.RANDOM:
        rng.shuffle(targets)
        return [tuple(targets[i : i + 3]) for i in range(0, len(targets) - len(targets) % 3, 3)]
    hists = {t.pk: histogram(t.image) for t in targets}
    dist = lambda a, b: float(np.abs(hists[a.pk] - hists[b.pk]).sum())  # noqa: E731
    triples = []
    while len(targets) >= 3:
        best = min(itertools.combinations(targets, 3), key=lambda c: dist(c[0], c[1]) + dist(c[0], c[2]) + dist(c[1], c[2]))
        triples.append(best)
        targets = [t for t in targets if t not in best]
    return triples


def _cluster_screens(*, survey: Survey, iris: list[IriImage], rng: random.Random) -> list[list[Trial]]:
    """Screens of three references (each target as the engine saw it, at the IRIs' size) and two IRIs of each."""
    per_target: dict[int, list[IriImage]] = {}
    for iri in iris:
        per_target.setdefault(iri.target_id, []).append(iri)
    usable = [iris_[0].target for iris_ in per_target.values() if len(iris_) >= CLUSTER_IRIS_PER_REFERENCE]
    screens = []
    for triple in cluster_triples(targets=usable, variant=survey.cluster_variant, rng=rng):
        refs = list(triple)
        rng.shuffle(refs)
        images = [per_target[ref.pk][0].target_image for ref in refs]
        rounds = min(len(per_target[t.pk]) for t in refs) // CLUSTER_IRIS_PER_REFERENCE
        for r in range(rounds):
            screen = secrets.token_urlsafe(12)
            rows = []
            for k, ref in enumerate(refs):
                for iri in per_target[ref.pk][r * 2 : r * 2 + 2]:
                    rows.append(
                        Trial(survey=survey, task_type=Clustering.name, screen=screen, iri=iri, query=iri.image,
                              option_0=images[0], option_1=images[1], option_2=images[2], n_options=3, target_option=k)
                    )
            screens.append(rows)
    return screens


def _obvious_screen(survey: Survey, photos: list, apart, kind: str, count: int, trial_list) -> list[Trial]:
    """Catch or practice trials on one screen of three photos never shown together, each row one of them."""
    refs = apart_group(photos, apart, 3, kind=kind)
    screen = secrets.token_urlsafe(12)
    return [
        Trial(survey=survey, trial_list=trial_list, kind=kind, task_type=Clustering.name, screen=screen,
              query=refs[k % 3], option_0=refs[0], option_1=refs[1], option_2=refs[2], n_options=3,
              target_option=k % 3)
        for k in range(count)
    ]


task_type_register(Clustering())
