"""What the per-answer exports (results.export_answers, results.export_model_vs_human) look up once per survey and
write the same way: the stored images' hashes, the target photos' names, the IRIs' validity records, the answers'
order, a trial's condition and its label, and an answer's true and chosen category.
"""
from __future__ import annotations

import numpy as np

from surveys.models import Survey
from surveys.task_types import task_type_get

from .selectors import CONDITION_FIELDS, iri_validity_table, stored_image_table, target_photo_names
from .survey_data import SurveyData


def answer_lookups(data: SurveyData) -> dict:
    """Image hashes ("sha"), target photo names ("photo"), validity records ("validity") by id, and the answers'
    order ("order": per participant, then by trial)."""
    trials = data.trials
    image_ids = set(trials["options"][trials["options"] >= 0].tolist()) | set(trials["query"].tolist())
    return {
        "sha": stored_image_table(ids=image_ids),
        "photo": target_photo_names(ids=set(trials["target"][trials["target"] >= 0].tolist())),
        "order": np.lexsort((data.answers["trial"], data.p_row)),  # per participant, then by trial
        "validity": iri_validity_table(ids=set(trials["iri"][trials["iri"] >= 0].tolist())),
    }


def condition_of_trial(data: SurveyData, row: int) -> dict:
    """The condition of the trial in row `row` (results.survey_data's conditions), {} for a trial without an IRI."""
    c = int(data.trial_condition[row])
    return data.conditions[c] if c >= 0 else {}


def condition_label(condition: dict) -> str:
    """A condition's fields joined by " · " (those it leaves empty left out)."""
    return " · ".join(str(condition[f]) for f in CONDITION_FIELDS if condition.get(f))


def answer_categories(*, survey: Survey, task_type: str, target_option: int, choice: int) -> tuple[str, str]:
    """An answer's true and chosen category, as its task type names them (classification: the survey's categories;
    empty where the options are images)."""
    return task_type_get(task_type).export_categories(survey=survey, target_option=target_option, choice=choice)
