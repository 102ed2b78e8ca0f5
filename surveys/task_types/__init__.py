"""Task types as parts behind one interface (base.TaskType), found by name (registry.task_type_get).

Built in: two_afc ('2afc'), clustering ('cluster'), classification ('classification'). A new paradigm is one more
module with a TaskType subclass and its design, registered with task_type_register."""
from .base import AnswerRows, Option, SurveyDesign, TaskType, design_options, option
from .registry import design_from, task_type_get, task_type_register, task_type_unregister, task_types

__all__ = [
    "AnswerRows",
    "Option",
    "SurveyDesign",
    "TaskType",
    "design_from",
    "design_options",
    "option",
    "task_type_get",
    "task_type_register",
    "task_type_unregister",
    "task_types",
]
