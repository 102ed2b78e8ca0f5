"""The kinds of operation run: each app that owns a long-running piece of work registers it here (in its
AppConfig.ready), so the one Celery task can run any of them without knowing the apps above it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from backend.exceptions import ApplicationError

UNKNOWN_KIND = ("No operation kind '{kind}'; the known kinds are {known}. An app registers its kinds with "
                "operations.registry.operation_kind_register in its AppConfig.ready.")
TWICE = "Operation kind '{kind}' is registered twice ({first} and {second}): kinds are named once across the apps."


class Progress(Protocol):
    def __call__(self, fraction: float, message: str = "") -> None: ...


# work(run, progress) -> the run's result: a JSON-able dict; run is an operations.models.OperationRun (not imported:
# the model reads its kinds' labels here). Raise ApplicationError to fail with a sentence.
OperationFunction = Callable[[Any, Progress], dict]


@dataclass(frozen=True)
class OperationKind:
    name: str
    function: OperationFunction
    label: str  # how the admin pages name it, e.g. "study archive"


_KINDS: dict[str, OperationKind] = {}


def operation_kind_register(name: str, function: OperationFunction, *, label: str = "") -> OperationKind:
    """Register `function(run, progress)` as the work of runs of kind `name` (again with the same function: no-op)."""
    known = _KINDS.get(name)
    if known is not None and known.function is not function:
        raise ValueError(TWICE.format(kind=name, first=_qualified(known.function), second=_qualified(function)))
    _KINDS[name] = OperationKind(name=name, function=function, label=label or name)
    return _KINDS[name]


def operation_kind_get(name: str) -> OperationKind:
    """The registered kind; an unknown one is an ApplicationError naming the known kinds."""
    try:
        return _KINDS[name]
    except KeyError:
        known = ", ".join(sorted(_KINDS)) or "none"
        raise ApplicationError(UNKNOWN_KIND.format(kind=name, known=known)) from None


def operation_kind_label(name: str) -> str:
    kind = _KINDS.get(name)
    return kind.label if kind is not None else name


def _qualified(function) -> str:
    return f"{function.__module__}.{function.__qualname__}"
