"""Reads for surveys: what a participant's browser receives, completion details, and the live monitor."""
import hashlib
import hmac
import statistics
from xml.sax.saxutils import escape

import markdown
from django.conf import settings
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from iri_worker.models import StoredImage

from .counted_answers import BEFORE_MAIN_KINDS, Purpose, sessions_with_answer_counts
from .images import image_ids_from_token, image_url
from .task_types import task_type_get
from .models import Assignment, Participant, Response, Slot, Survey, Trial, TrialList


def survey_get_live(*, slug: str) -> Survey | None:
    return Survey.objects.filter(slug=slug, status=Survey.Status.LIVE).first()


def survey_get_for_enroll(*, slug: str, pilot_key: str = "") -> Survey | None:
    """A live survey, or (with the right pilot key) a draft or live one in pilot mode."""
    survey = Survey.objects.filter(slug=slug).first()
    if survey is None:
        return None
    if pilot_key:
        return survey if pilot_key == survey.pilot_key and survey.status != Survey.Status.CLOSED else None
    return survey if survey.status == Survey.Status.LIVE else None


def participant_pseudonym(*, survey: Survey, external_id: str) -> str:
    """What exports show instead of a Prolific PID or MTurk worker ID: HMAC-SHA256 keyed with the survey's salt,
    16 hex digits. The same person keeps one pseudonym within a survey; across surveys they cannot be linked."""
    if not external_id:
        return ""
    return hmac.new(survey.pseudonym_salt.encode(), external_id.encode(), hashlib.sha256).hexdigest()[:16]


def participant_get(*, token: str) -> Participant | None:
    return Participant.objects.select_related("survey").filter(token=token).first()


def markdown_html(text: str) -> str:
    return markdown.markdown(text)


def participant_trials(*, participant: Participant) -> dict:
    """The participant's trials in order, as the browser sees them: ids and opaque image URLs only.

    Returns {"practice": [...], "trials": [...], "screens": [...], "practice_screens": [...], "screening": [...]}.
    2AFC entries are exactly {"id", "query", "options"}, the options in this participant's screen order;
    clustering rows add "screen", and the references of one screen share their URLs; classification entries are
    {"id", "query", "mask"} (practice, screening and main trials in their lists). Each trial's task type writes its
    own entry (TaskType.screen_add)."""
    assignments = Assignment.objects.filter(participant=participant).select_related("trial").order_by("position")
    out = {"practice": [], "trials": [], "screens": [], "practice_screens": [], "screening": []}

    def url(image_id: int, place: str) -> str:
        return image_url(participant_id=participant.pk, image_id=image_id, place=place)

    for a in assignments:
        t = a.trial
        shown = [t.option_ids[int(k)] for k in a.option_order]
        task_type_get(t.task_type).screen_add(out=out, trial=t, shown=shown, url=url)
    return out


def participant_image_get(*, token: str) -> StoredImage | None:
    """The image behind a participant's image URL, while that session is active; None otherwise."""
    ids = image_ids_from_token(token)
    if ids is None:
        return None
    participant_id, image_id = ids
    if not Participant.objects.filter(pk=participant_id, status=Participant.Status.ACTIVE).exists():
        return None
    return StoredImage.objects.filter(pk=image_id).first()


def participant_answered_ids(*, participant: Participant) -> list[str]:
    return list(participant.responses.values_list("trial__public_id", flat=True))


def participant_progress(*, participant: Participant) -> dict:
    """Main trials (with catch trials) assigned and answered; practice and screening (classification) separately,
    so `done == total` means the main part is finished whatever came before it."""
    practice, screening = Q(trial__kind=Trial.Kind.PRACTICE), Q(trial__kind=Trial.Kind.SCREENING)
    main = ~Q(trial__kind__in=BEFORE_MAIN_KINDS)
    counts = Assignment.objects.filter(participant=participant).aggregate(
        total=Count("id", filter=main),
        practice_total=Count("id", filter=practice),
        screening_total=Count("id", filter=screening),
    )
    answered = Response.objects.filter(participant=participant).aggregate(
        done=Count("id", filter=main),
        practice_done=Count("id", filter=practice),
        screening_done=Count("id", filter=screening),
    )
    return {**counts, **answered}


def participant_expires_in_s(*, participant: Participant) -> int | None:
    slot = Slot.objects.filter(participant=participant).values_list("reserved_until", "filled_at").first()
    if slot is None or slot[0] is None or slot[1] is not None:
        return None
    return max(0, int((slot[0] - timezone.now()).total_seconds()))


OUTCOME_CODE_FIELD = {
    Participant.Status.COMPLETED: "completion_code",
    Participant.Status.FAILED_ATTENTION: "code_failed_attention",
    Participant.Status.TIMED_OUT: "code_timed_out",
    Participant.Status.RETURNED: "code_timed_out",
    Participant.Status.TECHNICAL: "code_technical",
    Participant.Status.SCREENED_OUT: "code_screened_out",
}


def prolific_complete_url(*, code: str) -> str:
    return f"https://app.prolific.com/submissions/complete?cc={code}"


def participant_completion(*, participant: Participant) -> dict:
    """The outcome's code and where to send the person (Prolific URL, MTurk externalSubmit form); all None
    while the session is active, so no code reaches the browser before the server has every answer."""
    if participant.status == Participant.Status.ACTIVE:
        return {"completion_code": None, "redirect_url": None, "outcome": None, "mturk_submit": None}
    code = getattr(participant.survey, OUTCOME_CODE_FIELD[participant.status])
    redirect = prolific_complete_url(code=code) if participant.prolific_pid else None
    mturk = None
    if participant.assignment_id and participant.turk_submit_to:
        mturk = {
            "action": f"{participant.turk_submit_to}/mturk/externalSubmit",
            "method": "POST",
            "fields": {"assignmentId": participant.assignment_id, "completion_code": code},
        }
    return {"completion_code": code, "redirect_url": redirect, "outcome": participant.status, "mturk_submit": mturk}


MTURK_EXTERNAL_QUESTION_NAMESPACE = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
)
# 0 lets MTurk fit the frame to the worker's window (AWS, "ExternalQuestion"): the survey lays its screens out
# for the window it gets, where a fixed height would cut images off on small screens and leave a gap on tall ones.
MTURK_FRAME_HEIGHT = 0


def survey_mturk_external_question(*, survey: Survey, frame_height: int = MTURK_FRAME_HEIGHT) -> str:
    """The ExternalQuestion XML to paste into an MTurk HIT (create_hit's Question): the survey's public page at
    SITE_URL, to which MTurk appends assignmentId, hitId, workerId and turkSubmitTo. docs/mturk.md."""
    url = settings.SITE_URL.rstrip("/") + reverse("survey-page", kwargs={"slug": survey.slug})
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ExternalQuestion xmlns="{MTURK_EXTERNAL_QUESTION_NAMESPACE}">\n'
        f"  <ExternalURL>{escape(url)}</ExternalURL>\n"
        f"  <FrameHeight>{int(frame_height)}</FrameHeight>\n"
        "</ExternalQuestion>\n"
    )


def participant_state(*, participant: Participant, main_done: int | None = None, practice_done: int | None = None) -> str:
    """The monitor's state: arrived, consented, practising, in trials, completed, returned, timed out, excluded…"""
    if participant.status == Participant.Status.SCREENED_OUT:  # excluded too, but the monitor counts them apart
        return participant.status
    if participant.excluded:
        return "excluded"
    if participant.status != Participant.Status.ACTIVE:
        return participant.status
    if main_done:
        return "in_trials"
    if practice_done or participant.stage == Participant.Stage.PRACTICE:
        return "practising"
    if participant.stage == Participant.Stage.TRIALS:
        return "in_trials"
    return "consented" if participant.consented_at else "arrived"


def survey_monitor(*, survey: Survey, pilot: bool = False) -> dict:
    """Live monitor figures for one mode: participants with their state and last heartbeat, fill level of each
    trial list against N, exclusion rate, median duration of completed sessions."""
    purpose = Purpose.MONITOR_PILOT if pilot else Purpose.MONITOR_LIVE  # everyone of the mode, bots included
    participants = list(sessions_with_answer_counts(survey=survey, purpose=purpose).order_by("-id"))
    now = timezone.now()
    slot_counts = (
        Slot.objects.filter(survey=survey, is_pilot=pilot)
        .values("trial_list__index")
        .annotate(
            filled=Count("id", filter=Q(filled_at__isnull=False)),
            reserved=Count("id", filter=Q(filled_at__isnull=True, participant__isnull=False, reserved_until__gte=now)),
        )
    )
    trial_counts = dict(TrialList.objects.filter(survey=survey).annotate(n=Count("trials")).values_list("index", "n"))
    lists = [
        {"index": row["trial_list__index"], "trials": trial_counts.get(row["trial_list__index"], 0), "filled": row["filled"], "reserved": row["reserved"]}
        for row in sorted(slot_counts, key=lambda r: r["trial_list__index"])
    ]
    finished = [p for p in participants if p.status != Participant.Status.ACTIVE and p.status != Participant.Status.RETURNED]
    durations = [(p.ended_at - p.created_at).total_seconds() for p in participants if p.completed_at and p.ended_at]
    states = [participant_state(participant=p, main_done=p.main_done, practice_done=p.practice_done) for p in participants]
    return {
        "mode": "pilot" if pilot else "live",
        "n": survey.ratings_per_list,
        "lists": lists,
        "participants": [
            {
                "id": p.pk,
                "label": str(p),
                "state": state,
                "list": p.trial_list_id,
                "done": p.main_done,
                "practice_done": p.practice_done,
                "last_seen_s": int((now - p.last_seen_at).total_seconds()) if p.last_seen_at else None,
                "is_bot": p.is_bot,
                "is_rehearsal": p.is_rehearsal,
                "exclusion_reasons": p.exclusion_reasons,
            }
            for p, state in zip(participants, states)
        ],
        "states": {s: states.count(s) for s in sorted(set(states))},
        "exclusion_rate": (sum(p.excluded for p in finished) / len(finished)) if finished else None,
        "median_duration_s": statistics.median(durations) if durations else None,
    }


def stored_image_visible(*, user, name: str) -> bool:
    """Whether a stored image (by its file name) belongs to one of the user's teams: a target photo, an IRI,
    its seed or its target as seen, or an image on one of the team's survey screens."""
    from iri_worker.models import IriImage, TargetPhoto
    from teams.selectors import team_scoped

    image = StoredImage.objects.filter(file=name).values_list("pk", flat=True).first()
    if image is None:
        return False
    image_fields = Q(image_id=image) | Q(seed_id=image) | Q(target_image_id=image)
    trial_fields = Q(query_id=image) | Q(option_0_id=image) | Q(option_1_id=image) | Q(option_2_id=image)
    return (
        team_scoped(user=user, queryset=TargetPhoto.objects.filter(image_id=image)).exists()
        or team_scoped(user=user, queryset=IriImage.objects.filter(image_fields), path="job__team").exists()
        or team_scoped(user=user, queryset=Trial.objects.filter(trial_fields), path="survey__team").exists()
    )
