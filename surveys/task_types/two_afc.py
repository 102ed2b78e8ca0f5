"""Two-alternative forced choice: a query IRI above its target and a foil; which is closer to the query?"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from backend.exceptions import ApplicationError
from iri_worker.models import IriImage

from ..models import DEFAULT_TEXTS, Survey, Trial
from ..services.building import POOL_TOO_SMALL, class_of, labels_check, obvious_build
from ..stimuli import PhotoPool, image_size
from .base import SurveyDesign, TaskType, option
from .registry import task_type_register

NEEDS_TWO_TARGETS = "The foil rule '{rule}' needs IRI sets with at least two different target photos{where}."
NEEDS_TWO_PER_CLASS = (
    "The foil rule 'same_class' needs at least two target photos of each class in the chosen IRI sets; "
    "these classes have one: {labels}."
)
MIXED_SIZES_REFUSED = (
    "The chosen IRI sets have different image sizes ({sets}) and size_policy is 'refuse': choose sets of one size, "
    "or size_policy 'resize' to show every option at its query's size."
)


@dataclass(frozen=True, kw_only=True)
class TwoAfcDesign(SurveyDesign):
    foil_rule: str = option(Survey.FoilRule.SEED.value, choices=Survey.FoilRule,
                            help="Where the second option (the foil) comes from.")


class TwoAfc(TaskType):
    name = "2afc"
    label = "Two-alternative forced choice"
    design = TwoAfcDesign
    texts = DEFAULT_TEXTS["2afc"]
    description = "For each screen, look at three images and choose which of two images is closer to the third."

    def check(self, *, iris: list[IriImage], design: TwoAfcDesign, size_names: str | None) -> None:
        """Every image on one screen has one pixel size: with the seed as foil all three come from one set; a
        target of another set is resized to the query's size (policy 'resize') or the survey is refused. The foil
        rules need other targets: anywhere, in the same set, or of the same class."""
        rule = design.foil_rule
        if size_names and rule != Survey.FoilRule.SEED and design.size_policy == Survey.SizePolicy.REFUSE:
            raise ApplicationError(MIXED_SIZES_REFUSED.format(sets=size_names), extra={"field": "iri_jobs"})
        if rule == Survey.FoilRule.OTHER_TARGET and len({i.target_id for i in iris}) < 2:
            raise ApplicationError(NEEDS_TWO_TARGETS.format(rule=rule, where=""))
        elif rule == Survey.FoilRule.SAME_SET:
            for job_id, group in itertools.groupby(iris, key=lambda i: i.job_id):
                if len({i.target_id for i in group}) < 2:
                    raise ApplicationError(NEEDS_TWO_TARGETS.format(rule=rule, where=f" in each set (set {job_id} has one)"))
        elif rule == Survey.FoilRule.SAME_CLASS:
            labels_check(iris=iris)
            per_class: dict[str, set[int]] = {}
            for iri in iris:
                per_class.setdefault(class_of(iri), set()).add(iri.target_id)
            lonely = sorted(label for label, targets in per_class.items() if len(targets) < 2)
            if lonely:
                raise ApplicationError(NEEDS_TWO_PER_CLASS.format(labels=", ".join(f"'{label}'" for label in lonely)))

    def build(self, *, survey: Survey, iris: list[IriImage], rng: random.Random, pool: PhotoPool, report: dict) -> Survey:
        units = [[t] for t in _afc_trials(survey=survey, iris=iris, rng=rng, pool=pool, report=report)]
        return obvious_build(survey=survey, units=units, pool=pool, report=report, screens=_obvious_pairs)


def _afc_trials(*, survey: Survey, iris: list[IriImage], rng: random.Random, pool: PhotoPool, report: dict) -> list[Trial]:
    """One 2AFC trial per IRI. Foil rules: the seed; a random other target (any set); another target of the
    same IRI set; another target of the same class (TargetPhoto.label, checked by TwoAfc.check). A target foil
    is shown as the engine saw it, at the query's size: another set's target image of that size, or the photo
    fitted to it (recorded in the report). `target_option` is 0; the screen side is chosen per participant."""
    trials = []
    resized: dict[tuple, int] = {}
    for iri in iris:
        size = image_size(iri.image)
        if survey.foil_rule == Survey.FoilRule.SEED:
            foil = iri.seed
        else:
            if survey.foil_rule == Survey.FoilRule.OTHER_TARGET:
                candidates = iris
            elif survey.foil_rule == Survey.FoilRule.SAME_CLASS:
                candidates = [i for i in iris if class_of(i) == class_of(iri)]
            else:
                candidates = [i for i in iris if i.job_id == iri.job_id]
            others: dict[int, list[IriImage]] = {}
            for other in candidates:
                if other.target_id != iri.target_id:
                    others.setdefault(other.target_id, []).append(other)
            chosen = others[rng.choice(sorted(others))]
            same_size = [o.target_image for o in chosen if image_size(o.target_image) == size]
            if same_size:
                foil = same_size[0]
            else:
                foil = pool.fitted(f"target {chosen[0].target_id}", chosen[0].target.image, size)
                key = (chosen[0].job_id, str(chosen[0].job), image_size(chosen[0].target_image), size)
                resized[key] = resized.get(key, 0) + 1
        trials.append(
            Trial(survey=survey, iri=iri, query=iri.image, option_0=iri.target_image, option_1=foil, target_option=0,
                  foil_kind=survey.foil_rule)
        )
    report["resized"] = [
        {"set": job_id, "name": name, "from": list(old), "to": list(new), "images": n}
        for (job_id, name, old, new), n in sorted(resized.items())
    ]
    return trials


def _obvious_pairs(survey: Survey, photos: list, apart, kind: str, count: int, trial_list) -> list[Trial]:
    """Catch and practice screens: a photo as the query, itself and another photo never shown with it as options."""
    n = len(photos)
    pairs = [(photos[i], photos[(i + j) % n]) for j in range(1, n) for i in range(n) if apart(photos[i], photos[(i + j) % n])]
    if not pairs:
        raise ApplicationError(POOL_TOO_SMALL.format(what=kind, n=2, found=0))
    return [
        Trial(survey=survey, trial_list=trial_list, kind=kind, query=query, option_0=query, option_1=other,
              target_option=0, foil_kind="photo")
        for query, other in (pairs[k % len(pairs)] for k in range(count))
    ]


task_type_register(TwoAfc())
