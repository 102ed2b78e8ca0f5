"""Participant endpoints: no login; a session is named by its unguessable token."""
import functools
import json
import math
import re
import uuid

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.exceptions import ApplicationError, api_exception_handler

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
    response_record,
)

HEARTBEAT_S = 30
RT_MAX_MS = 24 * 3600 * 1000


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


class FiniteFloatField(serializers.FloatField):
    """A number, never NaN or infinity (FloatField takes "nan", "inf" and JSON's NaN)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return value


MAX_CHOICES = 256
TIMING_FIELDS = ("image_onset_ms", "image_offset_ms", "shown_ms", "refresh_hz", "frames")


class TimingSerializer(serializers.Serializer):
    image_onset_ms = FiniteFloatField(min_value=0, help_text="requestAnimationFrame time of the image's first frame")
    image_offset_ms = FiniteFloatField(min_value=0, help_text="… of the frame the mask replaced it")
    shown_ms = FiniteFloatField(min_value=0, max_value=RT_MAX_MS)
    refresh_hz = FiniteFloatField(min_value=0, max_value=1000)
    frames = serializers.IntegerField(min_value=0, max_value=1_000_000)


class ResponseCreateApi(ParticipantApi):
    """The answer endpoint as the OpenAPI schema describes it. Requests are served by `response_create` below,
    which does the same without DRF's per-request machinery (this is the hot path of every survey)."""

    class InputSerializer(serializers.Serializer):
        trial = serializers.CharField(max_length=40)
        choice = serializers.ChoiceField(choices=list(range(MAX_CHOICES)), help_text="the screen position; classification: the category's index")
        rt_ms = FiniteFloatField(min_value=0, max_value=RT_MAX_MS)
        idempotency_key = serializers.UUIDField()
        timing = TimingSerializer(required=False, help_text="classification: what the browser showed, measured")

    throttle_classes: list = []  # response_create applies the participant rate limits itself

    def post(self, request, token: str):
        return response_create(request._request, token)


_ANSWER_FIELDS = ("trial", "choice", "rt_ms", "idempotency_key")
_CHOICES = {str(k): k for k in range(MAX_CHOICES)}
_SURROGATE = re.compile("[\ud800-\udfff]")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_SAVED = b'{"saved":true}'


def _answer_fields(data) -> tuple[dict, dict]:
    """Validate an answer body as ResponseCreateApi.InputSerializer would (same rules, same messages), in a few
    microseconds instead of a serializer's deep copies. Returns (values, errors by field, in field order)."""
    if data is None:
        return {}, {"non_field_errors": ["No data provided"]}
    if not isinstance(data, dict):
        return {}, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]}
    values, errors = {}, {}
    for name in _ANSWER_FIELDS:
        if name not in data:
            errors[name] = ["This field is required."]
        elif data[name] is None:
            errors[name] = ["This field may not be null."]
    if "trial" not in errors:
        trial = data["trial"]
        if isinstance(trial, bool) or not isinstance(trial, (str, int, float)):
            errors["trial"] = ["Not a valid string."]
        elif not str(trial).strip():
            errors["trial"] = ["This field may not be blank."]
        elif len(str(trial).strip()) > 40:
            errors["trial"] = ["Ensure this field has no more than 40 characters."]
        elif "\x00" in str(trial):
            errors["trial"] = ["Null characters are not allowed."]
        elif surrogate := _SURROGATE.search(str(trial)):
            errors["trial"] = [f"Surrogate characters are not allowed: U+{ord(surrogate[0]):X}."]
        else:
            values["trial"] = str(trial).strip()
    if "choice" not in errors:
        choice = _CHOICES.get(str(data["choice"]))
        if choice is None:
            errors["choice"] = [f'"{data["choice"]}" is not a valid choice.']
        else:
            values["choice"] = choice
    if "rt_ms" not in errors:
        rt_ms = _rt_ms(data["rt_ms"])
        if isinstance(rt_ms, str):
            errors["rt_ms"] = [rt_ms]
        else:
            values["rt_ms"] = rt_ms
    if "idempotency_key" not in errors:
        key = data["idempotency_key"]
        try:
            values["idempotency_key"] = uuid.UUID(int=key) if isinstance(key, int) else uuid.UUID(hex=key)
        except (TypeError, ValueError, AttributeError):
            errors["idempotency_key"] = ["Must be a valid UUID."]
    if data.get("timing") is not None:  # optional: only classification trials send it
        timing = data["timing"]
        if not isinstance(timing, dict):
            errors["timing"] = ["Expected an object with " + ", ".join(TIMING_FIELDS) + "."]
        else:
            problems = {k: ["A finite number of 0 or more is required."] for k in TIMING_FIELDS
                        if not _timing_number(timing.get(k))}
            if problems:
                errors["timing"] = problems
            else:
                values["timing"] = {k: float(timing[k]) for k in TIMING_FIELDS}
    return values, {name: errors[name] for name in (*_ANSWER_FIELDS, "timing") if name in errors}


def _timing_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1e9


def _rt_ms(value) -> float | str:
    """The response time as a float, or the message the serializer's rt_ms field gives."""
    if isinstance(value, str) and len(value) > FiniteFloatField.MAX_STRING_LENGTH:
        return "String value too large."
    try:
        rt_ms = float(value)
    except OverflowError:
        return "Integer value too large to convert to float"
    except (TypeError, ValueError):
        return "A valid number is required."
    if not math.isfinite(rt_ms):
        return "A valid number is required."
    if rt_ms < 0:
        return "Ensure this value is greater than or equal to 0."
    if rt_ms > RT_MAX_MS:
        return f"Ensure this value is less than or equal to {RT_MAX_MS}."
    return rt_ms


def _json(body: dict | bytes, status_code: int, headers=()) -> HttpResponse:
    content = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    response = HttpResponse(content, status=status_code, content_type="application/json")
    for name, value in headers:
        response[name] = value
    return response


def _error(request, exc: Exception) -> HttpResponse:
    """The project's error shape, status and headers for an exception, exactly as the DRF views get them."""
    handled = api_exception_handler(exc, {"request": request})
    if handled is None:
        raise exc
    return _json(handled.data, handled.status_code, [(k, v) for k, v in handled.items() if k.lower() != "content-type"])


class _ThrottleView:
    """What the rate limits read from a view: the session token in `kwargs`."""

    __slots__ = ("kwargs",)

    def __init__(self, token: str):
        self.kwargs = {"token": token}


@csrf_exempt
def response_create(request, token: str):
    """POST an answer (surveys/API.md "Answer"): rate limit per session, validation, one SQL statement.

    The same contract as a DRF APIView (error shape, 429 with Retry-After, 405, 415), at a fraction of the CPU:
    no content negotiation, serializer copies, or authentication and permission objects per request."""
    try:
        if request.method != "POST":
            raise exceptions.MethodNotAllowed(request.method)
        throttles = [cls() for cls in ParticipantApi.throttle_classes]
        waits = [t.wait() for t in throttles if not t.allow_request(request, _ThrottleView(token))]
        if waits:
            raise exceptions.Throttled(max((w for w in waits if w is not None), default=None))
        if request.content_type in _FORM_TYPES:
            data = request.POST.dict()
        elif request.content_type in ("application/json", "") or not request.body:
            try:
                data = json.loads(request.body) if request.body else {}
            except ValueError as exc:
                raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
        else:
            raise exceptions.UnsupportedMediaType(request.content_type)
        v, errors = _answer_fields(data)
        if errors:
            raise exceptions.ValidationError(errors)
        created, extra = response_record(
            token=token, trial_public_id=v["trial"], choice=v["choice"], rt_ms=v["rt_ms"],
            idempotency_key=v["idempotency_key"], timing=v.get("timing"),
        )
    except Exception as exc:
        return _error(request, exc)
    code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return _json({"saved": True, **extra} if extra else _SAVED, code)


# The schema generator looks for `cls` on a URL's callback: the endpoint is documented by ResponseCreateApi.
response_create.cls, response_create.initkwargs = ResponseCreateApi, {}


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
