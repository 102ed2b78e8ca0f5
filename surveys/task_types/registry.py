"""The task types by name: the three built in (loaded on first use) and any registered later (a test's own)."""
from __future__ import annotations

import importlib

from backend.exceptions import ApplicationError

from .base import SurveyDesign, TaskType, design_options

BUILT_IN = ("surveys.task_types.two_afc", "surveys.task_types.clustering", "surveys.task_types.classification")
UNKNOWN_TASK_TYPE = "task_type: {value!r} is not a task type; choose one of {known}."
TASK_TYPE_TAKEN = "A task type named {name!r} is registered already."
NAME_TOO_LONG = "A task type's name is stored in 16 characters; {name!r} is longer."
NOT_AN_OPTION = "{field}: not a survey option; the options of a {task} survey are: {known}."
OTHER_TASKS_OPTION = "{field}: an option of {owners} surveys, not of {task} surveys."

_registry: dict[str, TaskType] = {}
_loaded = False


def _builtins_load() -> None:
    """Each built-in module registers its type when imported."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILT_IN:
            importlib.import_module(module)


def task_type_register(task_type: TaskType) -> TaskType:
    """Make a task type known by its name (surveys and the research API can then use it)."""
    if task_type.name in _registry:
        raise ValueError(TASK_TYPE_TAKEN.format(name=task_type.name))
    if len(task_type.name) > 16:
        raise ValueError(NAME_TOO_LONG.format(name=task_type.name))
    _registry[task_type.name] = task_type
    return task_type


def task_type_unregister(name: str) -> None:
    _registry.pop(name, None)


def task_types() -> list[TaskType]:
    """Every known task type, in the order registered (the built-in three first)."""
    _builtins_load()
    return list(_registry.values())


def task_type_get(name: str) -> TaskType:
    """The task type of this name; an unknown one is an ApplicationError naming the known ones (a 400)."""
    _builtins_load()
    try:
        return _registry[name]
    except (KeyError, TypeError):
        known = ", ".join(repr(k) for k in _registry)
        raise ApplicationError(UNKNOWN_TASK_TYPE.format(value=name, known=known), extra={"field": "task_type"}) from None


def design_from(*, task_type: TaskType, options: dict) -> SurveyDesign:
    """The task type's design made from options given by name; an option it does not take is an ApplicationError
    naming it (and, when it belongs to other task types, which)."""
    known = {opt.name for opt in design_options(task_type.design)}
    for field in options:
        if field not in known:
            owners = [t.name for t in task_types() if field in {o.name for o in design_options(t.design)}]
            message = (OTHER_TASKS_OPTION.format(field=field, owners=" and ".join(owners), task=task_type.name) if owners
                       else NOT_AN_OPTION.format(field=field, task=task_type.name, known=", ".join(sorted(known))))
            raise ApplicationError(message, extra={"field": field})
    return task_type.design(**options)
