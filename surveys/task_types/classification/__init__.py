"""Timed classification (Feather et al. 2023): a fixation mark, an image for image_ms, a noise mask, then one button
per category; the report compares people with the network on the very stimuli each person saw."""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from backend.exceptions import ApplicationError
from iri_worker.models import IriImage
from stats.recognition import recognition_by_condition, recognition_overall

from ...models import DEFAULT_TEXTS, MAX_DURATION_MS, Survey, Trial
from ...services.building import class_of, labels_check
from ...stimuli import PhotoPool
from ..base import AnswerRows, SurveyDesign, TaskType, option
from ..registry import task_type_register
from .build import classification_build

NEEDS_CATEGORY_LABELS = (
    "A classification survey shows one button per category, named by the target photos' class labels; every "
    "target photo needs one, and these have none: {names}. "
    "Set it in the admin (Target photos) or with the `label` field of POST /api/iri/photos."
)
NEEDS_TWO_CATEGORIES = "categories: a classification survey needs target photos of at least 2 classes (their labels)."
MIXED_SIZES_CLASSIFY = (
    "The chosen IRI sets have different image sizes ({sets}) and size_policy is 'refuse': choose sets of one size, "
    "or size_policy 'resize' to show each IRI at its own size (practice, screening and catch photos take the most "
    "common one)."
)
NETWORK_VERDICT = (
    "The network is right on a stimulus when its top-1 label of the IRI equals its top-1 label of the IRI's target "
    "photo (the IRI's validity record): it recognises the metamer as what it was made from. Answers to IRIs "
    "without that record are left out of the network columns and the trio."
)
DURATION = f"above 0 and at most {MAX_DURATION_MS} ms"


def _duration(v: int) -> bool:
    return 0 < v <= MAX_DURATION_MS


@dataclass(frozen=True, kw_only=True)
class ClassificationDesign(SurveyDesign):
    fixation_ms: int = option(300, valid=_duration, rule=DURATION, help="The fixation cross before the image (ms).")
    image_ms: int | None = option(300, valid=_duration, rule=f"empty (until answered), or {DURATION}",
                                  help="How long the image is shown (ms). Empty: until answered.")
    mask_ms: int = option(300, valid=_duration, rule=DURATION, help="The noise mask after the image (ms).")
    screening_trials: int = option(0, minimum=0, rule="0 or more",
                                   help="Natural photos after practice; failing them ends the session.")
    screening_pass_fraction: float = option(0.75, minimum=0, maximum=1, rule="between 0 and 1",
                                            help="Share of screening trials that must be right.")
    code_screened_out: str | None = option(None, max_length=32, help="Code: screened out. Empty: a random one.")
    exclude_mistimed: bool = option(False, help="Leave out answers whose image was shown a frame off its duration.")


class Classification(TaskType):
    name = "classification"
    label = "Timed classification (name the category of a briefly shown image)"
    design = ClassificationDesign
    texts = DEFAULT_TEXTS["classification"]
    description = "For each screen, look at an image and choose the category it shows from a set of buttons."
    kappa_categories = ("named_the_category", "named_another_category")
    options_are_categories = True
    timed = True
    summary_field = "recognition"
    statistic_name = "recognition_accuracy"
    statistic = ("recognition accuracy: the share of included main-trial answers naming the category of the photo the "
                 "IRI was made from, per condition")

    def check(self, *, iris: list[IriImage], design: ClassificationDesign, size_names: str | None) -> None:
        if size_names and design.size_policy == Survey.SizePolicy.REFUSE:
            raise ApplicationError(MIXED_SIZES_CLASSIFY.format(sets=size_names), extra={"field": "iri_jobs"})
        labels_check(iris=iris, message=NEEDS_CATEGORY_LABELS)
        if len({class_of(i) for i in iris}) < 2:
            raise ApplicationError(NEEDS_TWO_CATEGORIES, extra={"field": "categories"})

    def build(self, *, survey: Survey, iris: list[IriImage], rng: random.Random, pool: PhotoPool, report: dict) -> Survey:
        return classification_build(survey=survey, iris=iris, rng=rng, report=report)

    def plan_parts(self, survey: Survey) -> dict:
        return {"screening_trials": survey.screening_trials, "categories": list(survey.categories),
                "timing_ms": {"fixation": survey.fixation_ms, "image": survey.image_ms, "mask": survey.mask_ms},
                "screening_pass_fraction": survey.screening_pass_fraction, "exclude_mistimed": survey.exclude_mistimed}

    def n_options(self, survey: Survey) -> int:
        return max(2, len(survey.categories))

    def screen_add(self, *, out: dict, trial, shown: list[int], url) -> None:
        """The image and its mask; the options are the categories, in the session's body."""
        entry = {"id": trial.public_id, "query": url(trial.query_id, f"{trial.public_id}.q"),
                 "mask": url(trial.mask_id, f"{trial.public_id}.m")}
        where = {Trial.Kind.SCREENING: "screening", Trial.Kind.PRACTICE: "practice"}.get(trial.kind, "trials")
        out[where].append(entry)

    def session_extra(self, survey: Survey) -> dict:
        return {"classification": {"categories": survey.categories, "fixation_ms": survey.fixation_ms,
                                   "image_ms": survey.image_ms, "mask_ms": survey.mask_ms}}

    def feedback(self, *, trial, choice: int) -> dict:
        """The buttons are categories: practice feedback names the right one."""
        return {"correct": choice == trial.target_option, "correct_choice": trial.target_option}

    def export_categories(self, *, survey: Survey, target_option: int, choice: int) -> tuple[str, str]:
        names = survey.categories or []
        name = lambda k: str(names[k]) if 0 <= k < len(names) else ""  # noqa: E731
        return name(target_option), name(choice)

    def report_summary(self, rows: AnswerRows) -> dict:
        """Per condition and overall: human recognition accuracy, chance, the network's accuracy on the very stimuli
        each person saw, and the model-vs-human trio (stats.recognition)."""
        verdict = rows.network_correct()
        known = np.array([v is not None for v in verdict], dtype=bool)
        arrays = {
            "correct": rows.correct[known], "network_correct": verdict[known].astype(bool),
            "participants": rows.participant[known], "items": rows.item[known],
            "n_categories": rows.n_options[known], "units": rows.unit[known],
        }
        by_condition = recognition_by_condition(**arrays, conditions=rows.condition[known],
                                                n_conditions=len(rows.conditions), n_boot=rows.n_boot, seed=rows.seed,
                                                level=rows.level)
        for condition, out in zip(rows.conditions, by_condition):
            out.update(condition)
        return {
            "network_verdict": NETWORK_VERDICT,
            "answers_without_network_verdict": int((~known).sum()),
            "mistimed_answers": next(r["answers"] for r in rows.exclusion_counts if r["rule"] == "mistimed"),
            "overall": recognition_overall(**arrays, n_boot=rows.n_boot, seed=rows.seed, level=rows.level),
            "conditions": by_condition,
        }


task_type_register(Classification())
