"""Survey design: check a survey's choices (its task type's typed design, surveys.task_types) and build it through
its task type, publish it, and reset its pilot. The task types' own builds and the shared machinery (trial lists,
slots, catch and practice screens) are in surveys.task_types and surveys.services.building."""
import random

from django.db import transaction
from django.utils.text import slugify

from backend.exceptions import ApplicationError
from iri_worker.models import IriImage, IriJob
from iri_worker.selectors import VALIDITY_REASONS, iri_validity_failure
from operations.services import operation_run_create
from stats.adaptive.interval import condition_answers_needed
from stats.adaptive.planner import DEFAULT_DESIGN_EFFECT, WORST_CASE_P
from stats.adaptive.stopping import MIN_ANSWERS
from teams.actors import Actor
from teams.services import audit_record

from ..models import Participant, Slot, Survey
from ..signals import survey_published
from ..stimuli import PhotoPool, image_size
from ..task_types import SurveyDesign, TaskType, design_from, task_type_get, task_types
from .build_runs import SURVEY_BUILD_KIND, survey_build_done_check, survey_failed_build_remove

NO_FINISHED_SET = "Choose at least one finished IRI set (job status DONE with images)."
SETS_OF_TEAMS = "A survey's IRI sets must all belong to one team."
UNFINISHED_SETS = "These IRI sets are not finished: {names}."
SLUG_TAKEN = "A survey with the slug '{slug}' exists already."
BAD_SLUG = "The slug may contain only letters, digits, '-' and '_'."
SLUG_TOO_LONG = "The slug may be at most {n} characters long."
BAD_NUMBER = "{field} must be {rule}."
ALL_LEFT_OUT = "The validity filter leaves no IRI in the chosen sets ({reasons}); loosen it or choose other sets."
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


def survey_create(*, slug: str, title: str, iri_jobs: list[IriJob], task_type: str = Survey.TaskType.TWO_AFC,
                  actor: Actor | None = None, **settings) -> Survey:
    """A DRAFT survey of a task type (surveys.task_types), built in this process (commands, tests, the demo; the web
    hands the build to a worker with survey_create_start): its trials from the IRI sets, split into trial lists,
    each with N slots per mode (live, pilot). ``settings`` are the task type's design (its typed options: an option it
    does not take, or a bad value, is an ApplicationError naming it); each maps onto the Survey column of its name.

    The task type builds the trials (2AFC: one per IRI; clustering: screens of 3 references × 2 IRIs; classification:
    one per IRI, its options the categories); which side an option is shown on is decided per participant
    (surveys.layouts). What the builder did (resizing, IRIs left out) is in ``survey.build_report``.
    ``accept_goal_risk``: build a precision goal that the cap or the places may not reach at the worst case (it is
    refused otherwise); the risk is recorded in the build report (``goal_risk``) and shown on the survey's page.
    ``actor``: who builds it (teams.actors), in the audit log with the survey.
    """
    with transaction.atomic():
        survey, iris, report = _survey_draft_create(slug=slug, title=title, iri_jobs=iri_jobs, task_type=task_type,
                                                    actor=actor, **settings)
        return survey_trials_build(survey=survey, iris=iris, report=report)


def survey_create_start(*, slug: str, title: str, iri_jobs: list[IriJob], actor: Actor | None = None,
                        task_type: str = Survey.TaskType.TWO_AFC, **settings) -> Survey:
    """The web's survey_create: the same checks, the DRAFT survey stored now, and its build (the trials, with their
    image I/O) handed to a worker, an operation run of kind survey_build (surveys.operation_kinds). The survey is
    "building" until that run is done (build_runs.survey_build_state); publishing it before is refused."""
    with transaction.atomic():
        survey, iris, report = _survey_draft_create(slug=slug, title=title, iri_jobs=iri_jobs, task_type=task_type,
                                                    actor=actor, **settings)
        operation_run_create(kind=SURVEY_BUILD_KIND, subject=survey, actor=actor,
                             params={"iris": [iri.pk for iri in iris], "report": report})
    return survey


def _survey_draft_create(*, slug: str, title: str, iri_jobs: list[IriJob], task_type: str, actor: Actor | None,
                         **settings) -> tuple[Survey, list[IriImage], dict]:
    """The checked DRAFT survey without its trials (audited as created by ``actor``), the IRIs its trials will use
    and the start of its build report."""
    task = task_type_get(task_type)
    design = design_from(task_type=task, options=settings)
    if iri_jobs:
        survey_failed_build_remove(slug=slug, team_id=iri_jobs[0].team_id)  # "create it again" after a failed build
    iris, report = survey_check(slug=slug, iri_jobs=iri_jobs, task_type=task.name, design=design)
    survey = Survey.objects.create(team_id=iri_jobs[0].team_id, slug=slug, title=title, task_type=task.name,
                                   **{**design.columns(), **_task_texts(task=task, design=design)})
    survey.iri_jobs.set(iri_jobs)
    audit_record(actor=actor, action="survey.create", obj=survey)
    return survey, iris, report


def survey_trials_build(*, survey: Survey, iris: list[IriImage], report: dict) -> Survey:
    """Build a DRAFT survey's trials, lists and slots through its task type, seeded by its rng_seed (the same survey
    in a worker as in the process that created it)."""
    task = task_type_get(survey.task_type)
    pool = PhotoPool(targets=list({i.target_id: i.target for i in iris}.values()),
                     rng=random.Random(f"{survey.rng_seed}:pool"))
    return task.build(survey=survey, iris=iris, rng=random.Random(survey.rng_seed), pool=pool, report=report)


def survey_check(*, slug: str, iri_jobs: list[IriJob], task_type: str, design: SurveyDesign) -> tuple[list[IriImage], dict]:
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
    task = task_type_get(task_type)  # an unknown task must not build a 2AFC survey in silence
    positions, fraction = task.screen_positions, design.one_side_max_fraction
    if fraction is not None and not 1 / positions < fraction <= 1:
        rule = f"empty, or above 1/{positions} (an even spread over the {positions} screen positions) and at most 1"
        raise ApplicationError(BAD_NUMBER.format(field="one_side_max_fraction", rule=rule), extra={"field": "one_side_max_fraction"})
    iris = list(
        IriImage.objects.filter(job__in=iri_jobs)
        .select_related("job", "target__image", "target_image", "image", "seed").order_by("job_id", "id")
    )
    if not iris:
        raise ApplicationError(NO_FINISHED_SET)
    iris, left_out = _validity_filter(iris=iris, max_percentile=design.iri_max_percentile,
                                      require_label_match=design.iri_require_label_match)
    report = {
        "size_policy": design.size_policy,
        "resized": [],
        "validity_filter": {"max_percentile": design.iri_max_percentile,
                            "require_label_match": design.iri_require_label_match},
        "left_out": left_out,
    }
    if not iris:
        raise ApplicationError(ALL_LEFT_OUT.format(reasons=_reasons_text(left_out)), extra={"left_out": left_out})
    task.check(iris=iris, design=design, size_names=_sizes_differ(iris))
    if design.precision_goal is not None:
        risk = _precision_check(iris=iris, ratings_per_list=design.ratings_per_list,
                                trials_per_participant=design.trials_per_participant,
                                precision_goal=design.precision_goal, max_participants=design.max_participants,
                                accept_goal_risk=design.accept_goal_risk)
        if risk:
            report["goal_risk"] = risk
    return iris, report


def _sizes_differ(iris: list[IriImage]) -> str | None:
    """The chosen sets' image sizes in words when they differ (each task type decides what that means), else None."""
    sizes: dict[tuple, list[str]] = {}
    for job in {i.job_id: i.job for i in iris}.values():
        iri = next(i for i in iris if i.job_id == job.pk)
        sizes.setdefault(image_size(iri.image), []).append(f"set {job.pk} '{job}'")
    if len(sizes) < 2:
        return None
    return "; ".join(f"{', '.join(sets)}: {w}×{h} px" for (w, h), sets in sorted(sizes.items()))


def _task_texts(*, task: TaskType, design: SurveyDesign) -> dict:
    """The consent and instructions of the survey's own task where the researcher wrote none: a text left out, or
    left as any task's default (the admin's form comes filled with the 2AFC texts), becomes the task's default."""
    def same(a: str, b: str) -> bool:
        return " ".join(a.split()) == " ".join(b.split())

    texts = {}
    for field, default in task.texts.items():
        given = getattr(design, field)
        if given is None or any(same(given, other.texts[field]) for other in task_types()):
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


def survey_publish(*, survey: Survey, actor: Actor | None = None) -> Survey:
    survey_build_done_check(survey=survey)  # a worker's build still running, or failed: say so
    if not survey.trials.exists():
        raise ApplicationError("A survey without trials cannot be published.")
    with transaction.atomic():
        Survey.objects.filter(pk=survey.pk).update(status=Survey.Status.LIVE)
        # results freezes the analysis plan (hashed before any data); a refusal undoes the publish
        survey_published.send(sender=Survey, survey=survey, actor=actor)
        audit_record(actor=actor, action="survey.publish", obj=survey)
    survey.refresh_from_db()
    return survey


def survey_pilot_reset(*, survey: Survey, actor: Actor | None = None) -> int:
    """Delete every pilot (and bot-in-pilot) session of a survey and free the pilot slots. Returns how many."""
    with transaction.atomic():
        Slot.objects.filter(survey=survey, is_pilot=True).update(participant=None, reserved_until=None, filled_at=None)
        deleted, _ = Participant.objects.filter(survey=survey, is_pilot=True).delete()
        audit_record(actor=actor, action="survey.pilot_reset", obj=survey, details={"rows": deleted})
    return deleted
