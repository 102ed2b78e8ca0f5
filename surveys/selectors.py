import markdown

from .images import image_url
from .models import Assignment, Participant, Survey


def survey_get_live(*, slug: str) -> Survey | None:
    return Survey.objects.filter(slug=slug, status=Survey.Status.LIVE).first()


def participant_get(*, token: str) -> Participant | None:
    return Participant.objects.select_related("survey").filter(token=token).first()


def markdown_html(text: str) -> str:
    return markdown.markdown(text)


def participant_trials(*, participant: Participant) -> list[dict]:
    """The participant's trials in order, as the browser sees them: ids and opaque image URLs only."""
    assignments = (
        Assignment.objects.filter(participant=participant)
        .select_related("trial__query", "trial__option_0", "trial__option_1")
        .order_by("position")
    )
    trials = []
    for a in assignments:
        t = a.trial
        nonce = f"{participant.pk}.{t.public_id}"
        trials.append(
            {
                "id": t.public_id,
                "query": image_url(image=t.query, nonce=nonce + ".q"),
                "options": [image_url(image=t.option_0, nonce=nonce + ".0"), image_url(image=t.option_1, nonce=nonce + ".1")],
            }
        )
    return trials


def participant_answered_ids(*, participant: Participant) -> list[str]:
    return list(participant.responses.values_list("trial__public_id", flat=True))


def participant_progress(*, participant: Participant) -> dict:
    return {"total": participant.assignments.count(), "done": participant.responses.count()}
