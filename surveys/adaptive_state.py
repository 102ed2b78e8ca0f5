"""The typed contract of ``Survey.adaptive_state``: the JSON that adaptive collection stores on the survey row and
that enrollment, the planner, the report and the archive read (surveys.services.adaptive writes it).

Per IRI set (condition) the estimate is kept as parallel lists in condition order, as stored since the first
version. Versions of the stored JSON:

- 0 (no ``version`` key): written before this contract; surveys built before blocks (2026-12-06) have no
  ``blocks_per_participant`` (their participants took one trial list each: 1), and a state never re-estimated has
  no ``stopped_at``;
- 1: every field below, with ``version``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from kernel.records import record_values, record_version

@dataclass(frozen=True)
class AdaptiveState:
    """Adaptive collection's state (see surveys.services.adaptive for what each field means).

    conditions           the survey's IRI set (job) ids, in condition order
    lists                block (trial list) id, as a string -> its main trials per condition
    blocks_per_participant  how many blocks make a session (fixed at build)
    half_width, n_answers, alignment, design_effect, n_participants_set, done
                         per condition, from the live sessions completed at the last estimate
    completed            live sessions completed at the last estimate
    stop, reason         whether collection stopped and why ("goal", "cap_participants", "no_place"; "goal_pending"
                         without stop; "" while it goes on)
    estimated_at, stopped_at  ISO times of the last estimate and of the one that stopped collection (None: none yet)
    """

    VERSION: ClassVar[int] = 1
    # What version 0 may lack, and what it meant then.
    VERSION_0_DEFAULTS: ClassVar[dict[str, Any]] = {"blocks_per_participant": 1, "stopped_at": None}

    conditions: list[int]
    lists: dict[str, list[int]]
    blocks_per_participant: int
    half_width: list[float]
    n_answers: list[int]
    alignment: list[float | None]
    design_effect: list[float]
    n_participants_set: list[int]
    done: list[bool]
    completed: int
    stop: bool
    reason: str
    estimated_at: str | None
    stopped_at: str | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdaptiveState:
        """Read a stored state of any known version; ValueError naming the problem for an unknown version or key."""
        version = record_version(data, what="adaptive_state", latest=cls.VERSION)
        defaults = cls.VERSION_0_DEFAULTS if version == 0 else None
        values = record_values(cls, data, what="adaptive_state", defaults=defaults)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored in ``Survey.adaptive_state`` (the latest version); ``from_dict`` reads it back."""
        return {"version": self.VERSION, **dataclasses.asdict(self)}
