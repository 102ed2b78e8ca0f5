"""Writes for surveys: build trials from finished IRI sets, enroll participants, record answers."""
import random
import uuid

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.text import slugify
from rest_framework import status

from backend.exceptions import ApplicationError
from iri_worker.models import IriImage, IriJob

from .models import Assignment, Participant, Response, Survey, Trial

NO_FINISHED_SET = "Choose at least one finished IRI set (job status DONE with images)."
UNFINISHED_SETS = "These IRI sets are not finished: {names}."
NEEDS_TWO_TARGETS = "The foil rule 'another target' needs IRI sets with at least two different target photos."
SLUG_TAKEN = "A survey with the slug '{slug}' exists already."
BAD_SLUG = "The slug may contain only letters, digits, '-' and '_'."
SURVEY_NOT_LIVE = "This study is not open."
TRIAL_NOT_ASSIGNED = "This trial is not one of yours."
ALREADY_ANSWERED = "This trial has been answered already."
KEY_REUSED = "This idempotency key was used for another answer."
NOT_FINISHED = "Some answers have not reached the server yet."
NOT_CONSENTED = "Give consent before answering."


def survey_create(
    *,
    slug: str,
    title: str,
    iri_jobs: list[IriJob],
    foil_rule: str = Survey.FoilRule.SEED,
    trials_per_participant: int | None = None,
    rng_seed: int = 0,
    **texts: str,
) -> Survey:
    """A DRAFT 2AFC survey with one trial per IRI: query = the IRI, options = its target and a foil."""
    iris = survey_check(slug=slug, iri_jobs=iri_jobs, foil_rule=foil_rule)
    with transaction.atomic():
        survey = Survey.objects.create(
            slug=slug,
            title=title,
            foil_rule=foil_rule,
            trials_per_participant=trials_per_participant,
            rng_seed=rng_seed,
            **texts,
        )
        survey.iri_jobs.set(iri_jobs)
        Trial.objects.bulk_create(_trials_build(survey=survey, iris=iris, rng=random.Random(rng_seed)))
    return survey


def survey_check(*, slug: str, iri_jobs: list[IriJob], foil_rule: str) -> list[IriImage]:
    """Everything that must hold before a survey is created; returns the IRIs its trials will use."""
    if slugify(slug) != slug or not slug:
        raise ApplicationError(BAD_SLUG)
    if Survey.objects.filter(slug=slug).exists():
        raise ApplicationError(SLUG_TAKEN.format(slug=slug))
    if not iri_jobs:
        raise ApplicationError(NO_FINISHED_SET)
    unfinished = [str(j) for j in iri_jobs if j.status != IriJob.Status.DONE]
    if unfinished:
        raise ApplicationError(UNFINISHED_SETS.format(names=", ".join(unfinished)))
    iris = list(IriImage.objects.filter(job__in=iri_jobs).select_related("target_image", "image", "seed"))
    if not iris:
        raise ApplicationError(NO_FINISHED_SET)
    if foil_rule == Survey.FoilRule.OTHER_TARGET and len({i.target_id for i in iris}) < 2:
        raise ApplicationError(NEEDS_TWO_TARGETS)
    return iris


def _trials_build(*, survey: Survey, iris: list[IriImage], rng: random.Random) -> list[Trial]:
    trials = []
    for iri in iris:
        if survey.foil_rule == Survey.FoilRule.SEED:
            foil = iri.seed
        else:
            foil = rng.choice([other.target_image for other in iris if other.target_id != iri.target_id])
        target_option = rng.randrange(2)
        options = (iri.target_image, foil) if target_option == 0 else (foil, iri.target_image)
        trials.append(
            Trial(
                survey=survey,
                iri=iri,
                query=iri.image,
                option_0=options[0],
                option_1=options[1],
                target_option=target_option,
                foil_kind=survey.foil_rule,
            )
        )
    return trials


def survey_publish(*, survey: Survey) -> Survey:
    if not survey.trials.exists():
        raise ApplicationError("A survey without trials cannot be published.")
    Survey.objects.filter(pk=survey.pk).update(status=Survey.Status.LIVE)
    survey.refresh_from_db()
    return survey


def participant_enroll(
    *, survey: Survey, prolific_pid: str = "", study_id: str = "", session_id: str = "", token: str = ""
) -> tuple[Participant, bool]:
    """Start a session, or resume it for a returning Prolific ID or browser token. Returns (participant, created)."""
    if survey.status != Survey.Status.LIVE:
        raise ApplicationError(SURVEY_NOT_LIVE, status_code=status.HTTP_404_NOT_FOUND)
    if prolific_pid:
        existing = Participant.objects.filter(survey=survey, prolific_pid=prolific_pid).first()
    elif token:
        existing = Participant.objects.filter(survey=survey, token=token).first()
    else:
        existing = None
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            participant = Participant.objects.create(
                survey=survey, prolific_pid=prolific_pid, study_id=study_id, session_id=session_id
            )
            _assignments_create(participant=participant)
    except IntegrityError:  # the same Prolific ID enrolled twice at once: hand back the one that won
        return Participant.objects.get(survey=survey, prolific_pid=prolific_pid), False
    return participant, True


def _assignments_create(*, participant: Participant) -> None:
    survey = participant.survey
    rng = random.Random()
    trials = list(survey.trials.annotate(n=Count("assignments")).values_list("id", "n"))
    rng.shuffle(trials)
    # Least-seen trials first, so ratings spread evenly over the items.
    trials.sort(key=lambda t: t[1])
    chosen = [trial_id for trial_id, _ in trials[: survey.trials_per_participant or len(trials)]]
    rng.shuffle(chosen)
    Assignment.objects.bulk_create(
        Assignment(participant=participant, trial_id=trial_id, position=i) for i, trial_id in enumerate(chosen)
    )


def participant_consent(*, participant: Participant) -> Participant:
    Participant.objects.filter(pk=participant.pk, consented_at__isnull=True).update(consented_at=timezone.now())
    participant.refresh_from_db()
    return participant


def response_record(
    *, participant: Participant, trial_public_id: str, choice: int, rt_ms: float, idempotency_key: uuid.UUID
) -> tuple[Response, bool]:
    """Store one answer exactly once. Returns (response, created); a replayed key returns the stored answer."""
    same_key = Response.objects.filter(idempotency_key=idempotency_key).first()
    if same_key is not None:
        if same_key.participant_id != participant.pk or same_key.trial.public_id != trial_public_id:
            raise ApplicationError(KEY_REUSED, status_code=status.HTTP_409_CONFLICT)
        return same_key, False
    if participant.consented_at is None:
        raise ApplicationError(NOT_CONSENTED, status_code=status.HTTP_409_CONFLICT)
    assignment = (
        Assignment.objects.filter(participant=participant, trial__public_id=trial_public_id).select_related("trial").first()
    )
    if assignment is None:
        raise ApplicationError(TRIAL_NOT_ASSIGNED, status_code=status.HTTP_404_NOT_FOUND)
    try:
        with transaction.atomic():
            response = Response.objects.create(
                participant=participant,
                trial=assignment.trial,
                choice=choice,
                rt_ms=rt_ms,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        replay = Response.objects.filter(idempotency_key=idempotency_key, participant=participant).first()
        if replay is not None:  # the same POST raced itself
            return replay, False
        raise ApplicationError(ALREADY_ANSWERED, status_code=status.HTTP_409_CONFLICT) from None
    return response, True


def participant_complete(*, participant: Participant) -> Participant:
    missing = participant.assignments.exclude(trial__responses__participant=participant).count()
    if missing:
        raise ApplicationError(NOT_FINISHED, extra={"missing": missing}, status_code=status.HTTP_409_CONFLICT)
    Participant.objects.filter(pk=participant.pk, completed_at__isnull=True).update(completed_at=timezone.now())
    participant.refresh_from_db()
    return participant
