"""Survey design: build a survey's trials (2AFC or clustering screens, catch and practice trials), split them
into trial lists with N slots per mode (live, pilot), check the choices before building, publish, and reset the
pilot."""
import hashlib
import io
import itertools
import math
import random
import secrets

import numpy as np
from django.db import transaction
from django.utils.text import slugify
from PIL import Image

from backend.exceptions import ApplicationError
from iri_worker.models import IriImage, IriJob, StoredImage, TargetPhoto
from iri_worker.services import stored_image_save
from iri_worker.selectors import VALIDITY_REASONS, iri_validity_failure
from stats.adaptive.blocks import blocks_layout, blocks_split
from stats.adaptive.interval import condition_answers_needed
from stats.adaptive.planner import DEFAULT_DESIGN_EFFECT, WORST_CASE_P
from stats.adaptive.stopping import MIN_ANSWERS

from ..models import DEFAULT_TEXTS, Participant, Slot, Survey, Trial, TrialList
from ..stimuli import PhotoPool, image_size, stored_image_bytes, stored_image_fitted
from .adaptive import adaptive_state_initial

NO_FINISHED_SET = "Choose at least one finished IRI set (job status DONE with images)."
SETS_OF_TEAMS = "A survey's IRI sets must all belong to one team."
UNFINISHED_SETS = "These IRI sets are not finished: {names}."
NEEDS_TWO_TARGETS = "The foil rule '{rule}' needs IRI sets with at least two different target photos{where}."
NEEDS_LABELS = (
    "The foil rule 'same_class' needs a class label on every target photo; these have none: {names}. "
    "Set it in the admin (Target photos) or with the `label` field of POST /api/iri/photos."
)
# Classification names its buttons after the target photos' labels: a refusal says so, never a 2AFC foil rule.
NEEDS_CATEGORY_LABELS = (
    "A classification survey shows one button per category, named by the target photos' class labels; every "
    "target photo needs one, and these have none: {names}. "
    "Set it in the admin (Target photos) or with the `label` field of POST /api/iri/photos."
)
NEEDS_TWO_PER_CLASS = (
    "The foil rule 'same_class' needs at least two target photos of each class in the chosen IRI sets; "
    "these classes have one: {labels}."
)
NEEDS_CLUSTER_TARGETS = (
    "Clustering needs at least 3 target photos with 2 IRIs each (choose two IRI sets made from the same targets, "
    "or one set with two seeds per target)."
)
SLUG_TAKEN = "A survey with the slug '{slug}' exists already."
BAD_SLUG = "The slug may contain only letters, digits, '-' and '_'."
SLUG_TOO_LONG = "The slug may be at most {n} characters long."
BAD_NUMBER = "{field} must be {rule}."
BAD_TASK_TYPE = "task_type: {value!r} is not a task type; choose one of {known}."
BAD_SIZE_POLICY = "size_policy must be 'resize' or 'refuse', not '{value}'."
ALL_LEFT_OUT = "The validity filter leaves no IRI in the chosen sets ({reasons}); loosen it or choose other sets."
MIXED_SIZES_REFUSED = (
    "The chosen IRI sets have different image sizes ({sets}) and size_policy is 'refuse': choose sets of one size, "
    "or size_policy 'resize' to show every option at its query's size."
)
MIXED_SIZES_CLASSIFY = (
    "The chosen IRI sets have different image sizes ({sets}) and size_policy is 'refuse': choose sets of one size, "
    "or size_policy 'resize' to show each IRI at its own size (practice, screening and catch photos take the most "
    "common one)."
)
MIXED_SIZES_CLUSTER = "A clustering screen shows six IRIs at once, so its sets must share one image size; these differ: {sets}."
POOL_TOO_SMALL = (
    "The {what} trials need {n} natural photos outside the participants' main trials that are never shown together "
    "in a main trial; {found} are available. Add target photos, or ask for fewer {what} trials."
)

CAP_BELOW_ONE_LIST = "max_participants: a cap of {cap} is below one trial list's N ratings ({n})."
GOAL_UNREACHABLE = (
    "precision_goal: a half-width of {goal} needs at least {needed} answers per IRI set even if every answer agreed; "
    "at most {reachable} are possible (the smallest set's IRIs × N ratings, and the cap on participants). Choose a "
    "wider goal, a higher N or cap, or larger sets."
)
GOAL_AT_RISK = (
    "precision_goal: a half-width of {goal} needs {needed} answers per IRI set where people disagree most "
    "(alignment 0.5, design effect {design_effect:g}); at most {reachable} are possible (the smallest set's IRIs × N "
    "ratings, and the cap on participants), so collection may end with sets above the goal."
)
GOAL_RISK_CONFIRM = (
    " Choose a wider goal, a higher N or cap, or larger sets; or confirm with accept_goal_risk to build it anyway."
)

NEEDS_TWO_CATEGORIES = "categories: a classification survey needs target photos of at least 2 classes (their labels)."
NATURAL_TOO_FEW = (
    "{field}: {n} natural photos labelled with the survey's categories ({categories}) and not among its target photos "
    "are needed; the team has {found}. Add labelled target photos, or ask for fewer."
)
MAX_DURATION_MS = 10_000

CLUSTER_REFERENCES = 3
CLUSTER_IRIS_PER_REFERENCE = 2


def survey_create(
    *,
    slug: str,
    title: str,
    iri_jobs: list[IriJob],
    task_type: str = Survey.TaskType.TWO_AFC,
    foil_rule: str = Survey.FoilRule.SEED,
    cluster_variant: str = Survey.ClusterVariant.RANDOM,
    trials_per_participant: int | None = None,
    ratings_per_list: int = 10,
    catch_trials: int = 0,
    practice_trials: int = 0,
    rng_seed: int = 0,
    size_policy: str = Survey.SizePolicy.RESIZE,
    iri_max_percentile: float | None = None,
    iri_require_label_match: bool = False,
    accept_goal_risk: bool = False,
    **settings,
) -> Survey:
    """A DRAFT survey: trials from the IRI sets, split into trial lists, each with N slots per mode (live, pilot).

    2AFC: one main trial per IRI (query = the IRI; options = its target and a foil by `foil_rule`).
    Clustering: screens of 3 references × 2 IRIs each (one Trial row per IRI). Which side an option is shown on
    is decided per participant (surveys.layouts). Catch and practice trials are made of natural photos outside
    the main trials (surveys.stimuli). `settings` are further Survey fields (texts, codes, thresholds, time
    limit, resume policy, quota). What the builder did (resizing, IRIs left out) is in `survey.build_report`.
    ``accept_goal_risk``: build a precision goal that the cap or the places may not reach at the worst case (it is
    refused otherwise); the risk is recorded in the build report (``goal_risk``) and shown on the survey's page.
    """
    _numbers_check(ratings_per_list=ratings_per_list, catch_trials=catch_trials, practice_trials=practice_trials, **settings)
    iris, report = survey_check(
        slug=slug, iri_jobs=iri_jobs, foil_rule=foil_rule, task_type=task_type, size_policy=size_policy,
        iri_max_percentile=iri_max_percentile, iri_require_label_match=iri_require_label_match,
        one_side_max_fraction=settings.get("one_side_max_fraction"), precision_goal=settings.get("precision_goal"),
        max_participants=settings.get("max_participants"), ratings_per_list=ratings_per_list,
        trials_per_participant=trials_per_participant, accept_goal_risk=accept_goal_risk,
    )
    settings.update(_task_texts(task_type=task_type, settings=settings))
    rng = random.Random(rng_seed)
    with transaction.atomic():
        survey = Survey.objects.create(
            team_id=iri_jobs[0].team_id,
            slug=slug,
            title=title,
            task_type=task_type,
            foil_rule=foil_rule,
            cluster_variant=cluster_variant,
            trials_per_participant=trials_per_participant,
            ratings_per_list=ratings_per_list,
            catch_trials=catch_trials,
            practice_trials=practice_trials,
            rng_seed=rng_seed,
            size_policy=size_policy,
            iri_max_percentile=iri_max_percentile,
            iri_require_label_match=iri_require_label_match,
            **settings,
        )
        survey.iri_jobs.set(iri_jobs)
        pool = PhotoPool(targets=list({i.target_id: i.target for i in iris}.values()), rng=random.Random(f"{rng_seed}:pool"))
        if task_type == Survey.TaskType.CLASSIFY:
            return _classify_build(survey=survey, iris=iris, rng=rng, report=report)
        if task_type == Survey.TaskType.CLUSTER:
            units = _cluster_screens(survey=survey, iris=iris, rng=rng)
        else:
            units = [[t] for t in _afc_trials(survey=survey, iris=iris, rng=rng, pool=pool, report=report)]
        main = [t for unit in units for t in unit]
        shown_together = _shown_together(main)
        lists = _lists_build(survey=survey, units=units, rng=rng)
        _lists_store(survey=survey, lists=lists, catch_for=lambda trial_list, rows: _obvious_trials(
            survey=survey, kind=Trial.Kind.CATCH, count=catch_trials, trial_list=trial_list, main=rows, pool=pool,
            shown_together=shown_together))
        Trial.objects.bulk_create(_obvious_trials(survey=survey, kind=Trial.Kind.PRACTICE, count=practice_trials,
                                                  trial_list=None, main=main, pool=pool, shown_together=shown_together))
        return _survey_built(survey=survey, lists=lists, build_report=report)


def _lists_store(*, survey: Survey, lists: list[tuple[TrialList, list[list[Trial]]]], catch_for) -> None:
    """Store every list's main trials, each given its list, with the list's catch trials (catch_for(list, rows)).
    An adaptive survey's lists are blocks, several per participant: its catch trials are survey-wide (no list),
    made once from all its main trials, and every participant gets them."""
    adaptive = survey.precision_goal is not None
    for trial_list, units in lists:
        rows = [t for unit in units for t in unit]
        for t in rows:
            t.trial_list = trial_list
        Trial.objects.bulk_create(rows + ([] if adaptive else catch_for(trial_list, rows)))
    if adaptive:
        Trial.objects.bulk_create(catch_for(None, [t for _, units in lists for unit in units for t in unit]))


def _survey_built(*, survey: Survey, lists: list[tuple[TrialList, list]], **fields) -> Survey:
    """The end of every build: N slots per list and mode, adaptive collection's first state when the survey has a
    precision goal, and what the builder recorded (``fields``: build_report, and categories for a classification)."""
    _slots_create(survey=survey, lists=[tl for tl, _ in lists])
    if survey.precision_goal is not None:
        _, blocks = _blocks_layout(survey=survey, units=[unit for _, units in lists for unit in units])
        fields["adaptive_state"] = adaptive_state_initial(survey=survey, blocks_per_participant=blocks).to_dict()
    Survey.objects.filter(pk=survey.pk).update(**fields)
    for name, value in fields.items():
        setattr(survey, name, value)
    return survey


def survey_check(
    *,
    slug: str,
    iri_jobs: list[IriJob],
    foil_rule: str,
    task_type: str = Survey.TaskType.TWO_AFC,
    size_policy: str = Survey.SizePolicy.RESIZE,
    iri_max_percentile: float | None = None,
    iri_require_label_match: bool = False,
    one_side_max_fraction: float | None = None,
    precision_goal: float | None = None,
    max_participants: int | None = None,
    ratings_per_list: int = 10,
    trials_per_participant: int | None = None,
    accept_goal_risk: bool = False,
) -> tuple[list[IriImage], dict]:
    """Everything that must hold before a survey is created. Returns the IRIs its trials will use (those that
    pass the validity filter) and the start of its build report."""
    survey_slug_check(slug=slug)
    if not iri_jobs:
        raise ApplicationError(NO_FINISHED_SET)
    if len({j.team_id for j in iri_jobs}) > 1:
        raise ApplicationError(SETS_OF_TEAMS)
    unfinished = [str(j) for j in iri_jobs if j.status != IriJob.Status.DONE]
    if unfinished:
        raise ApplicationError(UNFINISHED_SETS.format(names=", ".join(unfinished)))
    if size_policy not in Survey.SizePolicy.values:
        raise ApplicationError(BAD_SIZE_POLICY.format(value=size_policy), extra={"field": "size_policy"})
    if task_type not in Survey.TaskType.values:  # an unknown task must not build a 2AFC survey in silence
        raise ApplicationError(BAD_TASK_TYPE.format(value=task_type, known=", ".join(Survey.TaskType.values)),
                               extra={"field": "task_type"})
    _numbers_check(iri_max_percentile=iri_max_percentile)
    positions = 3 if task_type == Survey.TaskType.CLUSTER else 2
    if one_side_max_fraction is not None and not 1 / positions < one_side_max_fraction <= 1:
        rule = f"empty, or above 1/{positions} (an even spread over the {positions} screen positions) and at most 1"
        raise ApplicationError(BAD_NUMBER.format(field="one_side_max_fraction", rule=rule), extra={"field": "one_side_max_fraction"})
    iris = list(
        IriImage.objects.filter(job__in=iri_jobs)
        .select_related("job", "target__image", "target_image", "image", "seed").order_by("job_id", "id")
    )
    if not iris:
        raise ApplicationError(NO_FINISHED_SET)
    iris, left_out = _validity_filter(iris=iris, max_percentile=iri_max_percentile, require_label_match=iri_require_label_match)
    report = {
        "size_policy": size_policy,
        "resized": [],
        "validity_filter": {"max_percentile": iri_max_percentile, "require_label_match": iri_require_label_match},
        "left_out": left_out,
    }
    if not iris:
        raise ApplicationError(ALL_LEFT_OUT.format(reasons=_reasons_text(left_out)), extra={"left_out": left_out})
    _sizes_check(iris=iris, task_type=task_type, foil_rule=foil_rule, size_policy=size_policy)
    if task_type == Survey.TaskType.CLASSIFY:
        _labels_check(iris=iris, message=NEEDS_CATEGORY_LABELS)
        if len({_class_of(i) for i in iris}) < 2:
            raise ApplicationError(NEEDS_TWO_CATEGORIES, extra={"field": "categories"})
    elif task_type == Survey.TaskType.CLUSTER:
        per_target = {}
        for iri in iris:
            per_target.setdefault(iri.target_id, []).append(iri)
        if sum(len(v) >= CLUSTER_IRIS_PER_REFERENCE for v in per_target.values()) < CLUSTER_REFERENCES:
            raise ApplicationError(NEEDS_CLUSTER_TARGETS)
    elif foil_rule == Survey.FoilRule.OTHER_TARGET and len({i.target_id for i in iris}) < 2:
        raise ApplicationError(NEEDS_TWO_TARGETS.format(rule=foil_rule, where=""))
    elif foil_rule == Survey.FoilRule.SAME_SET:
        for job_id, group in itertools.groupby(iris, key=lambda i: i.job_id):
            if len({i.target_id for i in group}) < 2:
                raise ApplicationError(NEEDS_TWO_TARGETS.format(rule=foil_rule, where=f" in each set (set {job_id} has one)"))
    elif foil_rule == Survey.FoilRule.SAME_CLASS:
        _labels_check(iris=iris)
        per_class: dict[str, set[int]] = {}
        for iri in iris:
            per_class.setdefault(_class_of(iri), set()).add(iri.target_id)
        lonely = sorted(label for label, targets in per_class.items() if len(targets) < 2)
        if lonely:
            raise ApplicationError(NEEDS_TWO_PER_CLASS.format(labels=", ".join(f"'{label}'" for label in lonely)))
    if precision_goal is not None:
        _numbers_check(precision_goal=precision_goal)
        risk = _precision_check(iris=iris, ratings_per_list=ratings_per_list,
                                trials_per_participant=trials_per_participant, precision_goal=precision_goal,
                                max_participants=max_participants, accept_goal_risk=accept_goal_risk)
        if risk:
            report["goal_risk"] = risk
    return iris, report


def _task_texts(*, task_type: str, settings: dict) -> dict:
    """The consent and instructions of the survey's own task where the researcher wrote none: a text left out, or
    left as any task's default (the admin's form comes filled with the 2AFC texts), becomes the task's default."""
    def same(a: str, b: str) -> bool:
        return " ".join(a.split()) == " ".join(b.split())

    texts = {}
    for field, default in DEFAULT_TEXTS[task_type].items():
        given = settings.get(field)
        if given is None or any(same(given, other[field]) for other in DEFAULT_TEXTS.values()):
            texts[field] = default
    return texts


def survey_slug_check(*, slug: str) -> None:
    """A new survey's slug: letters, digits, '-' and '_', short enough, and not taken."""
    if slugify(slug) != slug or not slug:
        raise ApplicationError(BAD_SLUG)
    limit = Survey._meta.get_field("slug").max_length
    if len(slug) > limit:
        raise ApplicationError(SLUG_TOO_LONG.format(n=limit))
    if Survey.objects.filter(slug=slug).exists():
        raise ApplicationError(SLUG_TAKEN.format(slug=slug))


def build_summary(report: dict) -> str:
    """The build report in one sentence, for the admin."""
    resized = report.get("resized") or []
    if resized:
        sizes = "; ".join(f"{r['images']} from set {r['set']} ({r['from'][0]}→{r['to'][0]} px)" for r in resized)
        parts = [f"resized options to their query's size: {sizes}"]
    else:
        parts = ["no image needed resizing (every screen shows one size)"]
    left_out = report.get("left_out") or {}
    parts.append(f"IRIs left out: {_reasons_text(left_out)}" if any(left_out.values()) else "no IRI left out")
    summary = "; ".join(parts) + "."
    if report.get("goal_risk"):  # the researcher confirmed a goal the worst case may not reach: say so every time
        summary += " Accepted at risk: " + report["goal_risk"]["warning"].removeprefix("precision_goal: ")
    return summary


def _validity_filter(*, iris: list[IriImage], max_percentile: float | None, require_label_match: bool):
    """Leave out the IRIs whose validity record fails the survey's filter; count them by reason."""
    left_out = {reason: 0 for reason in VALIDITY_REASONS}
    if max_percentile is None and not require_label_match:
        return iris, left_out
    kept = []
    for iri in iris:
        reason = iri_validity_failure(iri=iri, max_percentile=max_percentile, require_label_match=require_label_match)
        if reason is None:
            kept.append(iri)
        else:
            left_out[reason] += 1
    return kept, left_out


def _reasons_text(left_out: dict) -> str:
    return ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in left_out.items() if n)


def _sizes_check(*, iris: list[IriImage], task_type: str, foil_rule: str, size_policy: str) -> None:
    """Every image on one screen must have one pixel size. A 2AFC trial shows its IRI, its target and the
    foil: with the seed as foil all three come from one set; a target of another set is resized to the
    query's size (policy 'resize') or the survey is refused ('refuse'). A clustering screen shows six IRIs at
    once, so its sets must share one size."""
    sizes: dict[tuple, list[str]] = {}
    for job in {i.job_id: i.job for i in iris}.values():
        iri = next(i for i in iris if i.job_id == job.pk)
        sizes.setdefault(image_size(iri.image), []).append(f"set {job.pk} '{job}'")
    if len(sizes) < 2 or (task_type == Survey.TaskType.TWO_AFC and foil_rule == Survey.FoilRule.SEED):
        return
    names = "; ".join(f"{', '.join(sets)}: {w}×{h} px" for (w, h), sets in sorted(sizes.items()))
    if task_type == Survey.TaskType.CLUSTER:
        raise ApplicationError(MIXED_SIZES_CLUSTER.format(sets=names), extra={"field": "iri_jobs"})
    if size_policy == Survey.SizePolicy.REFUSE:
        refused = MIXED_SIZES_CLASSIFY if task_type == Survey.TaskType.CLASSIFY else MIXED_SIZES_REFUSED
        raise ApplicationError(refused.format(sets=names), extra={"field": "iri_jobs"})


def _labels_check(*, iris: list[IriImage], message: str = NEEDS_LABELS) -> None:
    unlabelled = sorted({i.target.name for i in iris if not (i.target.label or "").strip()})
    if unlabelled:
        raise ApplicationError(message.format(names=", ".join(unlabelled)))


def _class_of(iri: IriImage) -> str:
    """The class of an IRI's target photo; labels compare trimmed and case-insensitively ('Cat' = 'cat ')."""
    return iri.target.label.strip().casefold()


def _numbers_check(**fields) -> None:
    rules = {
        "ratings_per_list": (lambda v: v >= 1, "at least 1"),
        "catch_trials": (lambda v: v >= 0, "0 or more"),
        "practice_trials": (lambda v: v >= 0, "0 or more"),
        "time_limit_minutes": (lambda v: v >= 1, "at least 1"),
        "practice_pass_fraction": (lambda v: 0 <= v <= 1, "between 0 and 1"),
        "catch_min_accuracy": (lambda v: 0 <= v <= 1, "between 0 and 1"),
        "rt_floor_max_fraction": (lambda v: 0 <= v <= 1, "between 0 and 1"),
        "max_participants": (lambda v: v is None or v >= 1, "empty or at least 1"),
        "iri_max_percentile": (lambda v: 0 <= v <= 100, "empty or between 0 and 100"),
        "one_side_min_trials": (lambda v: v >= 1, "at least 1"),
        "precision_goal": (lambda v: 0 < v < 0.5, "empty or a half-width between 0 and 0.5 (exclusive)"),
        "precision_every": (lambda v: v >= 1, "at least 1"),
        "fixation_ms": (lambda v: 0 < v <= MAX_DURATION_MS, f"above 0 and at most {MAX_DURATION_MS} ms"),
        "image_ms": (lambda v: 0 < v <= MAX_DURATION_MS, f"empty (until answered), or above 0 and at most {MAX_DURATION_MS} ms"),
        "mask_ms": (lambda v: 0 < v <= MAX_DURATION_MS, f"above 0 and at most {MAX_DURATION_MS} ms"),
        "screening_pass_fraction": (lambda v: 0 <= v <= 1, "between 0 and 1"),
    }
    for field, value in fields.items():
        if field in rules and value is not None and not rules[field][0](value):
            raise ApplicationError(BAD_NUMBER.format(field=field, rule=rules[field][1]), extra={"field": field})


def _precision_check(*, iris: list[IriImage], ratings_per_list: int, trials_per_participant: int | None,
                     precision_goal: float, max_participants: int | None,
                     accept_goal_risk: bool = False) -> dict | None:
    """Refuse a precision goal that cannot be met even if every answer agreed (the narrowest interval there is):
    a cap below one list's N, or fewer answers than each set needs within the cap or the sets' N ratings.

    Then the same count at the worst case the planner assumes (alignment 0.5, its default design effect): refused
    too unless the researcher accepts the risk; returns the risk to record (None when the worst case fits)."""
    if max_participants is not None and max_participants < ratings_per_list:
        raise ApplicationError(CAP_BELOW_ONE_LIST.format(cap=max_participants, n=ratings_per_list),
                               extra={"field": "max_participants"})
    per_set: dict[int, int] = {}
    for iri in iris:
        per_set[iri.job_id] = per_set.get(iri.job_id, 0) + 1
    needed = max(MIN_ANSWERS, condition_answers_needed(p=0.0, half_width=precision_goal))
    reachable = min(per_set.values()) * ratings_per_list
    if max_participants is not None:
        per_person = trials_per_participant or len(iris)
        reachable = min(reachable, max_participants * per_person // len(per_set))
    if reachable < needed:
        raise ApplicationError(GOAL_UNREACHABLE.format(goal=precision_goal, needed=needed, reachable=reachable),
                               extra={"field": "precision_goal"})
    # Nobody knows the sets' alignment before collection: a set near 0.5 needs the most answers.
    worst = max(MIN_ANSWERS, condition_answers_needed(p=WORST_CASE_P, half_width=precision_goal,
                                                      design_effect=DEFAULT_DESIGN_EFFECT))
    if reachable >= worst:
        return None
    warning = GOAL_AT_RISK.format(goal=precision_goal, needed=worst, design_effect=DEFAULT_DESIGN_EFFECT,
                                  reachable=reachable)
    if not accept_goal_risk:
        raise ApplicationError(warning + GOAL_RISK_CONFIRM, extra={"field": "precision_goal"})
    return {"accepted": True, "needed": worst, "reachable": reachable, "warning": warning}


def _classify_build(*, survey: Survey, iris: list[IriImage], rng: random.Random, report: dict) -> Survey:
    """A timed classification survey (Feather et al. 2023): one main trial per IRI, its options the categories
    (the target photos' labels, sorted), the right one its target's; practice, screening and catch trials show
    natural photos of those categories that are not among the survey's targets, fitted to the IRIs' size; every
    trial has its own noise mask of its image's size (_Masks). Lists and slots as for 2AFC."""
    labels: dict[str, str] = {}
    for iri in sorted(iris, key=lambda i: i.target.label.strip()):
        labels.setdefault(_class_of(iri), iri.target.label.strip())
    keys = sorted(labels)
    categories = [labels[k] for k in keys]
    masks = _Masks(rng=rng, survey=survey)
    main = [
        Trial(survey=survey, iri=iri, query=iri.image, mask=masks.of(image_size(iri.image)), n_options=len(keys),
              target_option=keys.index(_class_of(iri)), task_type=Survey.TaskType.CLASSIFY)
        for iri in iris
    ]
    rng.shuffle(main)
    size = _common_size([t.query for t in main])
    photos = _natural_photos(survey=survey, iris=iris, keys=keys, categories=categories, rng=rng)

    def natural(kind: str, count: int, trial_list, source: list) -> list[Trial]:
        return [
            Trial(survey=survey, trial_list=trial_list, kind=kind, task_type=Survey.TaskType.CLASSIFY,
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
    lists = _lists_build(survey=survey, units=[[t] for t in main], rng=rng)
    _lists_store(survey=survey, lists=lists, catch_for=lambda trial_list, rows: natural(Trial.Kind.CATCH, survey.catch_trials, trial_list, photos))
    Trial.objects.bulk_create(natural(Trial.Kind.PRACTICE, survey.practice_trials, None, practice_photos)
                              + natural(Trial.Kind.SCREENING, survey.screening_trials, None, screening_photos))
    report.update(categories=categories, natural_photos=len(photos),
                  masks={"noise": "uniform RGB", "per": "trial", "count": len(masks.made), "seed": masks.seed})
    return _survey_built(survey=survey, lists=lists, build_report=report, categories=categories)


class _Masks:
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


def _natural_photos(*, survey: Survey, iris: list[IriImage], keys: list[str], categories: list[str], rng) -> list[TargetPhoto]:
    """The team's labelled photos of the survey's categories that are not among its targets, in a seeded order."""
    targets = {i.target_id for i in iris}
    photos = [
        p for p in TargetPhoto.objects.filter(team_id=survey.team_id).exclude(pk__in=targets).exclude(label=None)
        .select_related("image").order_by("pk")
        if p.label.strip().casefold() in keys
    ]
    rng.shuffle(photos)
    return photos


def _afc_trials(*, survey: Survey, iris: list[IriImage], rng: random.Random, pool: PhotoPool, report: dict) -> list[Trial]:
    """One 2AFC trial per IRI. Foil rules: the seed; a random other target (any set); another target of the
    same IRI set; another target of the same class (TargetPhoto.label, checked by survey_check). A target foil
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
                candidates = [i for i in iris if _class_of(i) == _class_of(iri)]
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


def _shown_together(main: list[Trial]) -> set[tuple[int, int]]:
    """Every (image, image) pair that a main trial shows on one screen: its options with each other and the
    query with each option (both orders)."""
    pairs = set()
    for t in main:
        ids = [t.query_id, *t.option_ids]
        pairs.update((a, b) for a in ids for b in ids if a != b)
    return pairs


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
                        Trial(survey=survey, task_type=Survey.TaskType.CLUSTER, screen=screen, iri=iri, query=iri.image,
                              option_0=images[0], option_1=images[1], option_2=images[2], n_options=3, target_option=k)
                    )
            screens.append(rows)
    return screens


def _lists_build(*, survey: Survey, units: list[list[Trial]], rng: random.Random) -> list[tuple[TrialList, list[list[Trial]]]]:
    """Split units (2AFC: a trial; clustering: a screen) into lists whose sizes differ by at most one unit: round
    robin in condition order, so every list mixes the IRI sets. With a precision goal, blocks of a few units of one
    set instead (stats.adaptive.blocks_split), of which each participant gets several, chosen at enrollment."""
    unit_size = len(units[0]) if units else 1
    per_list = math.ceil((survey.trials_per_participant or len(units) * unit_size) / unit_size)
    n_lists = max(1, math.ceil(len(units) / max(1, per_list)))
    if survey.precision_goal is not None:
        units_per_block, _ = _blocks_layout(survey=survey, units=units)
        split = blocks_split(units=units, condition_of=lambda u: u[0].iri.job_id, units_per_block=units_per_block)
    else:
        split = [units[i::n_lists] for i in range(n_lists)]
    lists = [TrialList.objects.create(survey=survey, index=i) for i in range(len(split))]
    return list(zip(lists, split))


def _blocks_layout(*, survey: Survey, units: list[list[Trial]]) -> tuple[int, int]:
    """An adaptive survey's (units per block, blocks per participant)."""
    unit_size = len(units[0]) if units else 1
    return blocks_layout(trials_per_participant=survey.trials_per_participant or len(units) * unit_size,
                         unit_size=unit_size)


def _obvious_trials(*, survey: Survey, kind: str, count: int, trial_list: TrialList | None, main: list[Trial],
                    pool: PhotoPool, shown_together: set) -> list[Trial]:
    """Catch trials (per list: `main` = the list's main trials) and practice (`main` = all of them): a natural
    photo as the query and the same photo among the options, beside other photos, all at the size of `main`'s
    queries. The photos are outside `main` and no two of them are ever shown together in a main trial, so
    they give nothing of a main trial away. 2AFC: one screen each; clustering: one screen of three references
    with a row per trial."""
    if not count:
        return []
    avoid = {i for t in main for i in (t.query_id, *t.option_ids)}
    size = _common_size([t.query for t in main])
    photos = _photos_for(pool=pool, size=size, avoid=avoid, survey=survey, what=kind)
    apart = lambda a, b: a.pk != b.pk and (a.pk, b.pk) not in shown_together  # noqa: E731
    if survey.task_type == Survey.TaskType.CLUSTER:
        refs = next((c for c in itertools.combinations(photos, 3) if all(apart(a, b) for a, b in itertools.combinations(c, 2))), None)
        if refs is None:
            raise ApplicationError(POOL_TOO_SMALL.format(what=kind, n=3, found=0))
        screen = secrets.token_urlsafe(12)
        return [
            Trial(survey=survey, trial_list=trial_list, kind=kind, task_type=Survey.TaskType.CLUSTER, screen=screen,
                  query=refs[k % 3], option_0=refs[0], option_1=refs[1], option_2=refs[2], n_options=3,
                  target_option=k % 3)
            for k in range(count)
        ]
    n = len(photos)
    pairs = [(photos[i], photos[(i + j) % n]) for j in range(1, n) for i in range(n) if apart(photos[i], photos[(i + j) % n])]
    if not pairs:
        raise ApplicationError(POOL_TOO_SMALL.format(what=kind, n=2, found=0))
    return [
        Trial(survey=survey, trial_list=trial_list, kind=kind, query=query, option_0=query, option_1=other,
              target_option=0, foil_kind="photo")
        for query, other in (pairs[k % len(pairs)] for k in range(count))
    ]


def _common_size(images: list[StoredImage]) -> tuple[int, int]:
    sizes = [image_size(i) for i in images]
    return max(set(sizes), key=lambda s: (sizes.count(s), s))


def _photos_for(*, pool: PhotoPool, size, avoid: set[int], survey: Survey, what: str) -> list[StoredImage]:
    needed = survey.n_options
    photos = pool.pick(size=size, n=max(needed + 1, 6), avoid=avoid)
    if len(photos) < needed:
        raise ApplicationError(POOL_TOO_SMALL.format(what=what, n=needed, found=len(photos)))
    return photos


def _slots_create(*, survey: Survey, lists: list[TrialList]) -> None:
    n = len(lists)
    Slot.objects.bulk_create(
        Slot(survey=survey, trial_list=tl, is_pilot=pilot, ordinal=k, rank=k * n + tl.index)
        for pilot in (False, True)
        for tl in lists
        for k in range(survey.ratings_per_list)
    )


def survey_publish(*, survey: Survey) -> Survey:
    from results.plans import plan_freeze  # results.plans reads surveys' models

    if not survey.trials.exists():
        raise ApplicationError("A survey without trials cannot be published.")
    with transaction.atomic():
        plan_freeze(survey=survey)  # the analysis plan, hashed before any data (a changed plan after data is refused)
        Survey.objects.filter(pk=survey.pk).update(status=Survey.Status.LIVE)
    survey.refresh_from_db()
    return survey


def survey_pilot_reset(*, survey: Survey) -> int:
    """Delete every pilot (and bot-in-pilot) session of a survey and free the pilot slots. Returns how many."""
    with transaction.atomic():
        Slot.objects.filter(survey=survey, is_pilot=True).update(participant=None, reserved_until=None, filled_at=None)
        deleted, _ = Participant.objects.filter(survey=survey, is_pilot=True).delete()
    return deleted
