"""The answer endpoint, the hot path of every survey: ``response_create`` serves POST .../responses with the
contract ResponseCreateApi documents (the same rules, messages, error shape and rate limits as a DRF view), without
DRF's per-request machinery. surveys/API.md "Answer" describes it."""
import json
import math
import re
import uuid

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers, status

from backend.exceptions import api_exception_handler

from .apis import ParticipantApi
from .services import response_record

RT_MAX_MS = 24 * 3600 * 1000


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
