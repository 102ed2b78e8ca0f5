"""Answering a survey the way a participant does, through surveys.services (whatever its current keywords)."""
import inspect
import uuid

from surveys import services as survey_services
from tests.conftest import new_key


def _accepts(function, name: str) -> bool:
    return name in inspect.signature(function).parameters


def survey_make(*, slug: str, iri_jobs: list, **options):
    """A live survey; options the survey service does not know (yet) are left out."""
    known = {k: v for k, v in options.items() if _accepts(survey_services.survey_create, k) or "settings" in inspect.signature(survey_services.survey_create).parameters}
    survey = survey_services.survey_create(slug=slug, title=slug, iri_jobs=iri_jobs, **known)
    return survey_services.survey_publish(survey=survey)


def screen_position(assignment, option: int) -> int:
    """Where the participant saw option `option` (0 = left): its place in the assignment's option_order
    (the option itself where no layout is recorded)."""
    order = getattr(assignment, "option_order", "") or ""
    return order.index(str(option)) if str(option) in order else option


def session_answer(
    survey, *, pid: str, choose, rt_ms: float = 700.0, complete: bool = True, is_bot: bool = False, limit: int | None = None, click=None
):
    """Enroll, consent and answer every assigned trial with `choose(trial) -> option index` (sent as the screen
    position where the participant saw that option), or with `click(trial) -> screen position` when given."""
    extra = {"is_bot": is_bot} if is_bot and _accepts(survey_services.participant_enroll, "is_bot") else {}
    participant, _ = survey_services.participant_enroll(survey=survey, prolific_pid=pid, **extra)
    survey_services.participant_consent(participant=participant)
    assignments = list(participant.assignments.select_related("trial").order_by("position"))
    for a in assignments[:limit]:
        position = click(a.trial) if click is not None else screen_position(a, choose(a.trial))
        kwargs = dict(trial_public_id=a.trial.public_id, choice=position, rt_ms=rt_ms, idempotency_key=uuid.UUID(new_key()))
        if _accepts(survey_services.response_record, "token"):
            survey_services.response_record(token=participant.token, **kwargs)
        else:
            survey_services.response_record(participant=participant, **kwargs)
    if complete and limit is None:
        participant = survey_services.participant_complete(participant=participant)
    participant.refresh_from_db()
    return participant


def target(trial):
    return trial.target_option


def not_target(trial):
    return (trial.target_option + 1) % getattr(trial, "n_options", 2)
