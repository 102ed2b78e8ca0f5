"""Participant endpoints: no login; a session is named by its unguessable token."""
import functools

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.exceptions import ApplicationError

from .bots import bot_credential_kind
from .images import image_bytes_for_participant

from .models import Participant, ParticipantEvent
from .selectors import (
    markdown_html,
    participant_answered_ids,
    participant_completion,
    participant_expires_in_s,
    participant_get,
    participant_image_get,
    participant_progress,
    participant_trials,
    survey_get_for_enroll,
)
from .services import (
    SURVEY_NOT_LIVE,
    UNKNOWN_SESSION,
    enroll_is_mturk_preview,
    participant_complete,
    participant_consent,
    participant_enroll,
    participant_events_record,
    participant_heartbeat,
    participant_leave,
)

HEARTBEAT_S = 30


class ParticipantApi(APIView):
    """Base for participant endpoints: open to anyone, no cookies, so no CSRF to carry."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def participant(self, token: str) -> Participant:
        participant = participant_get(token=token)
        if participant is None:
            raise ApplicationError(UNKNOWN_SESSION, status_code=status.HTTP_404_NOT_FOUND)
        return participant


def _session_body(participant: Participant) -> dict:
    survey = participant.survey
    return {
        "token": participant.token,
        "task_type": survey.task_type,
        "consent_html": markdown_html(survey.consent_md),
        "instructions_html": markdown_html(survey.instructions_md),
        "consented": participant.consented_at is not None,
        "completed": participant.status == Participant.Status.COMPLETED,
        "status": participant.status,
        "stage": participant.stage,
        **participant_progress(participant=participant),
        "time_limit_s": survey.time_limit_minutes * 60,
        "expires_in_s": participant_expires_in_s(participant=participant),
        "restarted": getattr(participant, "restarted", False),
        **participant_completion(participant=participant),
        **survey.task.session_extra(survey),
    }


class ClientInfoSerializer(serializers.Serializer):
    window_w = serializers.IntegerField(required=False, min_value=0, max_value=100000)
    window_h = serializers.IntegerField(required=False, min_value=0, max_value=100000)
    screen_w = serializers.IntegerField(required=False, min_value=0, max_value=100000)
    screen_h = serializers.IntegerField(required=False, min_value=0, max_value=100000)
    dpr = serializers.FloatField(required=False, min_value=0, max_value=100)
    touch = serializers.BooleanField(required=False)
    user_agent = serializers.CharField(required=False, max_length=500, allow_blank=True)
    refresh_hz = serializers.FloatField(required=False, min_value=0, max_value=1000)


class EnrollApi(ParticipantApi):
    class InputSerializer(serializers.Serializer):
        prolific_pid = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        study_id = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        session_id = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        worker_id = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        assignment_id = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        hit_id = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        turk_submit_to = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        token = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        pilot = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        bot = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        client = ClientInfoSerializer(required=False, default=dict)

    def post(self, request, slug: str):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        pilot_key = v.pop("pilot")
        bot = bot_credential_kind(credential=v.pop("bot").rsplit(".", 1)[0], slug=slug)
        survey = survey_get_for_enroll(slug=slug, pilot_key=pilot_key)
        if survey is None:
            raise ApplicationError(SURVEY_NOT_LIVE, status_code=status.HTTP_404_NOT_FOUND)
        if enroll_is_mturk_preview(assignment_id=v["assignment_id"]):
            return Response(
                {
                    "preview": True,
                    "title": survey.title,
                    "task_type": survey.task_type,
                    "consent_html": markdown_html(survey.consent_md),
                    "instructions_html": markdown_html(survey.instructions_md),
                }
            )
        participant, created = participant_enroll(
            survey=survey, pilot=bool(pilot_key), is_bot=bot == "bot", is_rehearsal=bot == "rehearsal", **v)
        return Response(_session_body(participant), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ConsentApi(ParticipantApi):
    def post(self, request, token: str):
        participant_consent(participant=self.participant(token))
        return Response({"consented": True})


class TrialListApi(ParticipantApi):
    def get(self, request, token: str):
        participant = self.participant(token)
        trials = participant_trials(participant=participant)
        return Response(
            {
                "task_type": participant.survey.task_type,
                **trials,
                "done": participant_answered_ids(participant=participant),
                "total": len(trials["trials"]),
                "practice_total": len(trials["practice"]),
            }
        )


class TrialNextApi(ParticipantApi):
    def get(self, request, token: str):
        participant = self.participant(token)
        answered = set(participant_answered_ids(participant=participant))
        trials = participant_trials(participant=participant)
        remaining = [dict(t, practice=True) for t in trials["practice"] if t["id"] not in answered]
        remaining += [dict(t, screening=True) for t in trials["screening"] if t["id"] not in answered]
        remaining += [t for t in trials["trials"] if t["id"] not in answered]
        progress = participant_progress(participant=participant)
        return Response({"trial": remaining[0] if remaining else None, "total": progress["total"], "done": progress["done"]})


class EventsApi(ParticipantApi):
    class EventSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        type = serializers.ChoiceField(choices=ParticipantEvent.Type.choices)
        t_ms = serializers.FloatField(required=False, allow_null=True, default=None)
        trial = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")
        data = serializers.JSONField(required=False, default=dict)

    class InputSerializer(serializers.Serializer):
        events = serializers.ListField(child=serializers.DictField(), max_length=500, default=list)
        client = ClientInfoSerializer(required=False, default=dict)

    def post(self, request, token: str):
        participant = self.participant(token)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        events = self.EventSerializer(data=data.validated_data["events"], many=True)
        events.is_valid(raise_exception=True)
        stored = participant_events_record(participant=participant, events=events.validated_data, client=data.validated_data["client"])
        return Response({"stored": stored})


class HeartbeatApi(ParticipantApi):
    class InputSerializer(serializers.Serializer):
        stage = serializers.CharField(max_length=20, required=False, allow_blank=True, default="")

    def post(self, request, token: str):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        participant = participant_heartbeat(participant=self.participant(token), stage=data.validated_data["stage"])
        return Response({"status": participant.status, "expires_in_s": participant_expires_in_s(participant=participant)})


class CompleteApi(ParticipantApi):
    def post(self, request, token: str):
        participant = participant_complete(participant=self.participant(token))
        return Response(participant_completion(participant=participant))


class ReturnApi(ParticipantApi):
    def post(self, request, token: str):
        participant = participant_leave(participant=self.participant(token), status_to=Participant.Status.RETURNED)
        return Response(participant_completion(participant=participant))


class AbortApi(ParticipantApi):
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=40, required=False, default="load_failure")
        detail = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    def post(self, request, token: str):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        detail = f"{data.validated_data['reason']}: {data.validated_data['detail']}"
        participant = participant_leave(participant=self.participant(token), status_to=Participant.Status.TECHNICAL, detail=detail)
        return Response(participant_completion(participant=participant))


# MTurk shows a HIT's page in a frame on its worker site: production, the legacy www site (which turkSubmitTo
# still names) and the sandbox. docs/mturk.md.
MTURK_WORKER_SITES = ("https://worker.mturk.com", "https://www.mturk.com", "https://workersandbox.mturk.com")


def framed_by_mturk_only(view):
    """A participant page may be shown inside MTurk's HIT frame and in no other: CSP frame-ancestors names MTurk's
    worker sites. X-Frame-Options is left off, as it can only say DENY or SAMEORIGIN; every other page keeps
    settings.X_FRAME_OPTIONS (DENY)."""

    @functools.wraps(view)
    def view_framed_by_mturk(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = "frame-ancestors " + " ".join(MTURK_WORKER_SITES)
        return response

    return xframe_options_exempt(view_framed_by_mturk)


@framed_by_mturk_only
def survey_page(request, slug: str):
    pilot_key = request.GET.get("pilot", "")
    survey = survey_get_for_enroll(slug=slug, pilot_key=pilot_key)
    if survey is None:
        return render(request, "surveys/closed.html", status=404)
    config = {
        "slug": survey.slug,
        "enroll_url": reverse("participant-enroll", kwargs={"slug": survey.slug}),
        "session_base": reverse("participant-session-base"),
        "task_type": survey.task_type,
        "heartbeat_s": HEARTBEAT_S,
    }
    if pilot_key:
        config["pilot"] = pilot_key
    return render(request, "surveys/participant.html", {"survey": survey, "config": config})


def participant_image(request, token: str):
    image = participant_image_get(token=token)
    if image is None:
        raise Http404("No such image.")
    response = HttpResponse(image_bytes_for_participant(image), content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"
    return response
