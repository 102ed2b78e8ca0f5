"""What a task type is: its typed design (the survey options it takes) and its parts behind one interface.

A task type (2AFC, clustering, classification, …) is one subclass of ``TaskType`` registered by name
(surveys.task_types.registry). The shared machinery — photo pools, image storage, trial lists, slots, blocks —
lives in surveys.services.building; a type's parts call it. Its parts, in the order a study meets them:

- design: a frozen dataclass of its options with their defaults and rules (``SurveyDesign`` and the type's own
  fields); the admin form, the research API's serializer and the OpenAPI schema are derived from it;
- build: ``check`` refuses what it cannot build, ``build`` makes the trials, lists and slots;
- session: ``main_order`` orders a participant's main trials, ``screen_add`` writes what a trial's screen gets
  (never which option is right), ``session_extra`` adds to the session's body;
- answer: ``feedback`` on a practice answer;
- export: ``export_categories`` names an answer's true and chosen category;
- report: ``report_summary``, a pure function from the included answers (``AnswerRows``) to the type's summary.
"""
from __future__ import annotations

import dataclasses
import functools
import random
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from backend.exceptions import ApplicationError

from ..models import Survey

BAD_NUMBER = "{field} must be {rule}."
BAD_CHOICE = "{field} must be one of {values}, not {value!r}."
BAD_TYPE = "{field} must be {kind}, not {value!r}."
KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def option(default, *, help: str = "", rule: str = "", valid: Callable[[Any], bool] | None = None, choices=None,
           max_length: int | None = None, minimum: float | None = None, maximum: float | None = None,
           column: bool = True):
    """A design field: its default, what it means (help), and its rule: ``valid`` (with ``rule`` in words for the
    refusal), or ``choices`` (a TextChoices class), or inclusive bounds (``minimum``, ``maximum``, which the API's
    schema shows too). ``column``: the Survey column of the same name holds it (False: a build-time switch)."""
    if valid is None and (minimum is not None or maximum is not None):
        valid = lambda v: (minimum is None or v >= minimum) and (maximum is None or v <= maximum)  # noqa: E731
    metadata = {"help": help, "rule": rule, "valid": valid, "choices": choices, "max_length": max_length,
                "minimum": minimum, "maximum": maximum, "column": column}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Option:
    """A design field as the form, the serializer and the checks read it."""

    name: str
    kind: type  # int, float, bool or str
    nullable: bool
    default: Any
    meta: Mapping[str, Any]

    @property
    def choices(self):
        """The option's TextChoices class (its Survey column's choices), or None."""
        return self.meta.get("choices")


@functools.cache
def design_options(design: type) -> tuple[Option, ...]:
    """A design class's options, in declaration order."""
    hints = typing.get_type_hints(design)
    out = []
    for f in dataclasses.fields(design):
        annotation, nullable = hints[f.name], False
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            args = typing.get_args(annotation)
            annotation, nullable = next(a for a in args if a is not type(None)), type(None) in args
        out.append(Option(f.name, annotation, nullable, f.default, f.metadata))
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class SurveyDesign:
    """The options every survey takes, whatever its task; a task type's design adds its own. Each is checked when
    the object is made: a bad value is an ApplicationError naming the field (a 400 in the API)."""

    trials_per_participant: int | None = option(
        None, minimum=1, rule="empty or at least 1",
        help="Main trials per participant (clustering: rounded up to whole screens). Empty: every trial.")
    ratings_per_list: int = option(10, minimum=1, rule="at least 1", help="N ratings per trial list.")
    catch_trials: int = option(0, minimum=0, rule="0 or more", help="Catch trials per participant.")
    practice_trials: int = option(0, minimum=0, rule="0 or more", help="Practice trials (with feedback).")
    practice_pass_fraction: float = option(0.5, minimum=0, maximum=1, rule="between 0 and 1",
                                           help="Share of practice trials that must be right.")
    catch_min_accuracy: float = option(0.75, minimum=0, maximum=1, rule="between 0 and 1",
                                       help="Below this share of right catch trials: failed attention.")
    rt_floor_ms: float = option(200.0, minimum=0, rule="0 or more", help="Answers faster than this count as too fast.")
    rt_floor_max_fraction: float = option(0.25, minimum=0, maximum=1, rule="between 0 and 1",
                                          help="Excluded when more than this share of answers is too fast.")
    refill_excluded: bool = option(True, help="An excluded participant's slot goes to someone else.")
    time_limit_minutes: int = option(60, minimum=1, rule="at least 1", help="How long a reservation is held.")
    resume_policy: str = option("resume", choices=Survey.ResumePolicy, help="What a returning participant gets.")
    max_participants: int | None = option(
        None, minimum=1, rule="empty or at least 1",
        help="Quota of live places; with a precision goal, the cap on participants. Empty: lists × N.")
    size_policy: str = option("resize", choices=Survey.SizePolicy, help="When the chosen IRI sets differ in image size.")
    iri_max_percentile: float | None = option(
        None, minimum=0, maximum=100, rule="empty or between 0 and 100",
        help="Leave out IRIs whose distance to their target is above this percentile of the null distribution.")
    iri_require_label_match: bool = option(False, help="Leave out IRIs the model labels differently from their target.")
    one_side_max_fraction: float | None = option(
        None, minimum=0, maximum=1, rule="empty, or a share above 1/(screen positions) and at most 1",
        help="Exclude one-sided responders: at least this share of answers on one screen position. Empty: off.")
    one_side_min_trials: int = option(20, minimum=1, rule="at least 1",
                                      help="The one-sided rule applies from this many answers on.")
    precision_goal: float | None = option(
        None, valid=lambda v: 0 < v < 0.5, rule="empty or a half-width between 0 and 0.5 (exclusive)",
        help="Adaptive collection: the 95 % CI half-width every IRI set must reach, in (0, 0.5). Empty: fixed N.")
    precision_every: int = option(1, minimum=1, rule="at least 1",
                                  help="Adaptive collection: re-estimate after this many completed sessions.")
    accept_goal_risk: bool = option(
        False, column=False,
        help="Adaptive collection: build a goal that the cap or the places may not reach where people disagree most "
             "(refused otherwise); the build report and the survey's page keep the warning.")
    retention_days: int | None = option(
        None, minimum=0, rule="empty or 0 or more",
        help="Days after a session ends before its external ids are dropped; empty: keep.")
    desktop_only: bool = option(False, help="Refuse phones and tablets (touch screens).")
    rng_seed: int = option(0, help="The seed of the build (foils, lists, catch and practice photos).")
    consent_md: str | None = option(None, help="Consent text (Markdown). Empty: the task's own.")
    instructions_md: str | None = option(None, help="Instructions (Markdown). Empty: the task's own.")
    completion_code: str | None = option(None, max_length=32, help="Code: completed. Empty: a random one.")
    code_failed_attention: str | None = option(None, max_length=32, help="Code: failed attention. Empty: random.")
    code_timed_out: str | None = option(None, max_length=32, help="Code: timed out / returned. Empty: random.")
    code_technical: str | None = option(None, max_length=32, help="Code: technical problem. Empty: random.")

    def __post_init__(self):
        for opt in design_options(type(self)):
            value = _option_value(opt, getattr(self, opt.name))
            object.__setattr__(self, opt.name, value)

    def columns(self) -> dict:
        """The Survey columns this design sets: every column option, less the empty texts and codes (the model
        and the task type give those)."""
        return {opt.name: getattr(self, opt.name) for opt in design_options(type(self))
                if opt.meta.get("column", True) and not (opt.kind is str and getattr(self, opt.name) is None)}


def _option_value(opt: Option, value):
    """One option's value after its type and rule are checked (a whole float for an int field, or an int for a
    float, is taken); a bad one is an ApplicationError naming the field."""
    field = opt.name
    if value is None:
        if not opt.nullable:
            raise ApplicationError(BAD_TYPE.format(field=field, kind=KINDS[opt.kind], value=value), extra={"field": field})
        return value
    if opt.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif opt.kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, opt.kind) or (opt.kind is not bool and isinstance(value, bool)):
        raise ApplicationError(BAD_TYPE.format(field=field, kind=KINDS[opt.kind], value=value), extra={"field": field})
    if opt.choices is not None and value not in opt.choices.values:
        values = ", ".join(repr(v) for v in opt.choices.values)
        raise ApplicationError(BAD_CHOICE.format(field=field, values=values, value=value), extra={"field": field})
    if opt.meta.get("max_length") and len(value) > opt.meta["max_length"]:
        rule = f"at most {opt.meta['max_length']} characters"
        raise ApplicationError(BAD_NUMBER.format(field=field, rule=rule), extra={"field": field})
    if opt.meta.get("valid") is not None and not opt.meta["valid"](value):
        raise ApplicationError(BAD_NUMBER.format(field=field, rule=opt.meta["rule"]), extra={"field": field})
    return value


@dataclass(frozen=True)
class AnswerRows:
    """A survey's included answers to trials with a condition (one entry per answer), for a task type's report
    summary: plain numpy, so the summary is a pure function of them."""

    correct: np.ndarray  # bool: the answer chose the target option
    choice: np.ndarray  # the chosen option's index
    participant: np.ndarray  # the participant's row (0..n-1)
    item: np.ndarray  # the trial's row
    unit: np.ndarray  # the target photo (or a stand-in per trial), the second way of two-way resampling
    condition: np.ndarray  # the condition's row in ``conditions``
    n_options: np.ndarray  # the trial's number of options
    conditions: list[dict]  # per condition: label, layer, backbone, checkpoint, recipe
    exclusion_counts: list[dict]  # every exclusion rule with the answers and participants it removed
    network_correct: Callable[[], np.ndarray]  # per answer True / False / None: the network's verdict, read on demand
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95


class TaskType:
    """One survey paradigm. Subclass it, set the class attributes, override the parts that differ from 2AFC's
    defaults below, and register an instance (surveys.task_types.task_type_register)."""

    name: ClassVar[str]  # stored in Survey.task_type and Trial.task_type (at most 16 characters)
    label: ClassVar[str]
    design: ClassVar[type[SurveyDesign]] = SurveyDesign
    texts: ClassVar[dict[str, str]]  # the default consent_md and instructions_md
    description: ClassVar[str]  # what a participant reads about the task on Prolific
    screen_positions: ClassVar[int] = 2  # where an answer can be on the screen (the one-sided rule's positions)
    kappa_categories: ClassVar[tuple[str, str]] = ("chose_target", "chose_foil")
    options_are_categories: ClassVar[bool] = False  # buttons named by Survey.categories, in their fixed order
    timed: ClassVar[bool] = False  # the browser times each image (the mistimed flag and rule)
    summary_field: ClassVar[str] = "task_summary"  # where the report keeps report_summary's result
    statistic_name: ClassVar[str] = "alignment"  # the report's primary statistic, as the analysis plan names it
    statistic: ClassVar[str] = "alignment: the share of included main-trial answers choosing the target, per condition"

    # ----------------------------------------------------------------------------------------- build
    def check(self, *, iris: list, design: SurveyDesign, size_names: str | None) -> None:
        """Refuse, before anything is stored, what this type cannot build from these IRIs (after the validity
        filter). ``size_names``: the chosen sets' sizes in words when they differ, else None."""

    def build(self, *, survey, iris: list, rng: random.Random, pool, report: dict):
        """Make the survey's trials, trial lists and slots (surveys.services.building) and return the survey."""
        raise NotImplementedError

    def n_options(self, survey) -> int:
        return self.screen_positions

    # ----------------------------------------------------------------------------------------- session
    def main_order(self, *, rows: list, rng: random.Random) -> list[int]:
        """The order of a participant's main and catch trials (TrialShape rows): a fresh random order."""
        ids = [t.id for t in rows]
        rng.shuffle(ids)
        return ids

    def screen_add(self, *, out: dict, trial, shown: list[int], url: Callable[[int, str], str]) -> None:
        """Add what a trial's screen gets to the participant's trials (surveys.selectors.participant_trials):
        ids and opaque image URLs only. ``shown``: the option images in this participant's screen order."""
        entry = {"id": trial.public_id, "query": url(trial.query_id, f"{trial.public_id}.q"),
                 "options": [url(image_id, f"{trial.public_id}.{k}") for k, image_id in enumerate(shown)]}
        out["practice" if trial.kind == "practice" else "trials"].append(entry)

    def session_extra(self, survey) -> dict:
        """What this type adds to the participant's session body."""
        return {}

    # ----------------------------------------------------------------------------------------- answer
    def feedback(self, *, trial, choice: int) -> dict:
        """A practice answer's feedback."""
        return {"correct": choice == trial.target_option}

    # ----------------------------------------------------------------------------------------- export, report
    def export_categories(self, *, survey, target_option: int, choice: int) -> tuple[str, str]:
        """An answer's true and chosen category (the exports' category columns); empty where options are images."""
        return "", ""

    def report_summary(self, rows: AnswerRows) -> dict | None:
        """This type's own part of the report (None: it has none)."""
        return None

    def plan_parts(self, survey) -> dict:
        """What of this type's own design decides the report's numbers, for the analysis plan (results.plans)."""
        return {}
