"""One error shape for every API: {"message": "...", "extra": {...}}."""
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

DATABASE_DOWN = "The database is unavailable for a moment; please try again."
DATABASE_RETRY_AFTER_S = 2


class ApplicationError(Exception):
    """A domain rule was broken; the message is meant for the user."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, extra: dict | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        if status_code is not None:
            self.status_code = status_code


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        inner = _first_message(value)
        return inner if key in ("non_field_errors", "__all__", "detail") else f"{key}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def api_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, ApplicationError):
        return Response({"message": exc.message, "extra": exc.extra}, status=exc.status_code)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # PostgreSQL restarting or out of reach: a transient 503 that clients retry, not a 500 with a trace.
        return Response({"message": DATABASE_DOWN, "extra": {}}, status=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    response.data = {"message": _first_message(detail), "extra": {"fields": detail} if isinstance(detail, dict) else {}}
    return response
