"""The interfaces' fields derived from the task types' designs, so that no list of survey options is kept by hand:
the research API's serializer per task type (and with it the OpenAPI schema) and the admin form's option fields."""
from __future__ import annotations

from rest_framework import serializers

from .base import Option, TaskType, design_options
from .registry import task_types

SERIALIZER_FIELDS = {int: serializers.IntegerField, float: serializers.FloatField, bool: serializers.BooleanField,
                     str: serializers.CharField}


def option_serializer_field(opt: Option) -> serializers.Field:
    """The option as a DRF field: its type, bounds and choices for the schema; the design object checks the rest
    (a value the field takes may still be refused by the design, naming the field)."""
    common = {"required": False, "help_text": opt.meta.get("help") or None}
    if opt.nullable:
        common["allow_null"] = True
    if opt.choices is not None:
        return serializers.ChoiceField(choices=opt.choices.choices, **common)
    kwargs = dict(common)
    if opt.kind in (int, float):
        if opt.meta.get("minimum") is not None:
            kwargs["min_value"] = opt.meta["minimum"]
        if opt.meta.get("maximum") is not None:
            kwargs["max_value"] = opt.meta["maximum"]
    if opt.kind is str:
        kwargs["allow_blank"] = False
        if opt.meta.get("max_length"):
            kwargs["max_length"] = opt.meta["max_length"]
    return SERIALIZER_FIELDS[opt.kind](**kwargs)


def design_fields(task: TaskType) -> dict[str, serializers.Field]:
    """A task type's options as DRF fields, by name (a serializer class copies its declared fields per instance)."""
    return {opt.name: option_serializer_field(opt) for opt in design_options(task.design)}


def admin_option_names() -> list[str]:
    """Every option that maps onto a Survey column, over all task types, in declaration order: the admin's add
    form shows them all and passes on those of the chosen task type."""
    names: dict[str, None] = {}
    for task in task_types():
        for opt in design_options(task.design):
            if opt.meta.get("column", True):
                names.setdefault(opt.name)
    return list(names)


def task_options(task: TaskType, values: dict) -> dict:
    """Of a form's cleaned values, the chosen task type's options (the form shows every type's)."""
    return {opt.name: values[opt.name] for opt in design_options(task.design) if opt.name in values}
