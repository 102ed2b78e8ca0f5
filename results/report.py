"""The typed contract of the alignment report (results.services.alignment_report_compute builds it): what the API
serves, the study archive stores as report/report.json (its reanalyse.py compares its numbers), the admin report
page and the ``alignment_report`` command show. ``to_dict`` is that JSON, key for key, with ``version``.

The conditions table and the comparisons are dataclasses of their own; the other sections (exclusions, agreement,
sides, collection, recognition, design, plan, proxy) stay JSON objects, as the statistics and the builder's
sections write them. Versions: 0 (no ``version`` key: reports made before this contract, e.g. in study archives
since 2026-12-06) has the same keys as 1.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from kernel.records import record_values, record_version

@dataclass(frozen=True, kw_only=True)
class ConditionRow:
    """One condition (IRI sets sharing backbone, checkpoint, training, recipe, seed kind and layer): its alignment
    (stats.alignment.Alignment's fields), agreement, ceiling, proxy scores and a note when it cannot say much."""

    condition: str  # the condition's fields joined by " · " ("" when all are empty)
    iri_set: int  # the first of its IRI sets
    iri_sets: list[int]
    name: str  # its IRI sets' names joined by " + "
    backbone: str
    checkpoint: str
    training: str
    recipe: str
    seed_kind: str
    layer: str
    chance: float | None
    alignment: float | None
    ci_low: float | None
    ci_high: float | None
    n_answers: int
    n_participants: int
    n_items: int
    n_correct: int
    wilson_low: float | None
    wilson_high: float | None
    n_answers_before_exclusion: int
    fleiss_kappa: dict
    ceiling: dict
    proxy: dict[str, dict]
    note: str

    @property
    def label(self) -> str:
        """What the report calls the condition elsewhere: its fields, else its IRI sets' names."""
        return self.condition or self.name

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditionRow:
        return cls(**record_values(cls, data, what="A report's condition"))


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Condition a minus condition b, with a paired bootstrap interval and what the two share."""

    a: str
    b: str
    a_iri_sets: list[int]
    b_iri_sets: list[int]
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    excludes_zero: bool
    shared_target_photos: int
    shared_participants: int
    paired: bool

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        return cls(**record_values(cls, data, what="A report's comparison"))


@dataclass(frozen=True, kw_only=True)
class AlignmentReport:
    """A survey's alignment report; ``recognition`` only for classification surveys and ``task_summary`` only for a
    task type that gives a summary of its own (each absent from the JSON else)."""

    VERSION: ClassVar[int] = 1

    survey: str
    title: str
    admin_url: str
    task_type: str
    foil_rule: str
    chance: float | None
    ci: str
    level: float
    n_boot: int
    seed: int
    n_answers: int
    n_main_answers: int
    n_included: int
    n_participants: int
    n_items: int
    exclusions: dict
    agreement: dict
    sides: dict
    collection: dict
    recognition: dict | None = None
    task_summary: dict | None = None  # a task type's own summary (TaskType.report_summary) without a field of its own
    design: dict
    plan: dict
    ratings_per_item: list[dict]
    ratings_target: int
    proxy: dict
    conditions: list[ConditionRow]
    comparisons: list[Comparison]
    notes: list[str]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlignmentReport:
        """Read a report of any known version (the API's JSON, an archive's report.json); ValueError naming the
        problem for an unknown version or key, or a missing one."""
        record_version(data, what="The report", latest=cls.VERSION)
        values = record_values(cls, data, what="The report", optional=("recognition", "task_summary"))
        values["conditions"] = [ConditionRow.from_dict(row) for row in values["conditions"]]
        values["comparisons"] = [Comparison.from_dict(row) for row in values["comparisons"]]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON (the latest version); ``from_dict`` reads it back."""
        data = {"version": self.VERSION, **dataclasses.asdict(self)}
        for optional in ("recognition", "task_summary"):
            if data[optional] is None:
                del data[optional]
        return data
