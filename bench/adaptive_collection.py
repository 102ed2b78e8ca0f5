"""The collection of bench/adaptive.py, as surveys/services runs it: the build's blocks, enrollment, people in
flight, completion and the estimates, with the pure functions of stats/adaptive (see bench/adaptive.py's docstring
for the steps). ``collection_simulate`` replays a scripted schedule: tests/bench/test_adaptive_simulator_http.py
checks that the HTTP path makes the same decisions."""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stats.adaptive.blocks import blocks_choose, blocks_layout, blocks_split  # noqa: E402
from stats.adaptive.interval import condition_intervals  # noqa: E402
from stats.adaptive.stopping import (  # noqa: E402
    collection_verdict,
    estimate_due,
    useful_places_left,
)


@dataclass(frozen=True)
class BlockLayout:
    """An adaptive survey's blocks: each one's IRI set (condition index) and items (trials), N places each."""

    block_conditions: np.ndarray
    block_items: tuple[np.ndarray, ...]
    places: int
    blocks_per_participant: int
    n_conditions: int

    @property
    def block_sizes(self) -> np.ndarray:
        return np.array([items.size for items in self.block_items], dtype=np.int64)


def layout_build(*, units: list[int], condition_of: Callable[[int], int], n_conditions: int,
                 trials_per_participant: int, places: int) -> BlockLayout:
    """The builder's blocks (surveys/services/design.py): ``blocks_layout`` and ``blocks_split`` on the units (one
    2AFC trial each, identified by its item) in the order given."""
    units_per_block, blocks_per_participant = blocks_layout(trials_per_participant=trials_per_participant,
                                                            unit_size=1)
    split = blocks_split(units=units, condition_of=condition_of, units_per_block=units_per_block)
    return BlockLayout(
        block_conditions=np.array([condition_of(block[0]) for block in split], dtype=np.int64),
        block_items=tuple(np.array(block, dtype=np.int64) for block in split),
        places=places, blocks_per_participant=blocks_per_participant, n_conditions=n_conditions,
    )


@dataclass
class Estimate:
    """The part of ``Survey.adaptive_state`` that enrollment and the rule read."""

    half_width: np.ndarray
    n_answers: np.ndarray
    done: np.ndarray
    completed: int = 0
    stop: bool = False
    reason: str = ""


@dataclass
class Collection:
    """One adaptive survey's collection: places per block, sessions under way, completed answers and the last
    estimate; ``enroll``, ``complete`` and ``abandon`` do what the enrollment and session services do."""

    layout: BlockLayout
    goal: float
    rng_seed: int
    cap_participants: int | None = None
    every: int = 1
    filled: np.ndarray = field(init=False)
    held: np.ndarray = field(init=False)
    sessions: dict[int, list[int]] = field(init=False, default_factory=dict)  # ordinal -> blocks, every session
    under_way: set[int] = field(init=False, default_factory=set)
    enrolled: int = field(init=False, default=0)  # live participants created (the next ordinal)
    completed: int = field(init=False, default=0)
    estimate: Estimate = field(init=False)
    stopped_after: int | None = field(init=False, default=None)  # completions when the rule stopped

    def __post_init__(self):
        k, n_blocks = self.layout.n_conditions, self.layout.block_conditions.size
        self.filled = np.zeros(n_blocks, dtype=np.int64)
        self.held = np.zeros(n_blocks, dtype=np.int64)
        self.estimate = Estimate(half_width=np.full(k, 0.5), n_answers=np.zeros(k, dtype=np.int64),
                                 done=np.zeros(k, dtype=bool))
        capacity = int(self.layout.places * self.layout.block_sizes.sum())
        self._answers = {name: np.zeros(capacity, dtype=np.int64) for name in ("correct", "person", "item", "cond")}
        self._size = 0
        self._item_condition = np.zeros(max(int(items.max()) for items in self.layout.block_items) + 1,
                                         dtype=np.int64)
        for c, items in zip(self.layout.block_conditions, self.layout.block_items):
            self._item_condition[items] = c

    def _cap_reached(self) -> bool:  # surveys.services.adaptive.adaptive_cap_reached: under way or completed
        return bool(self.cap_participants) and len(self.under_way) + self.completed >= self.cap_participants

    def enroll(self) -> int | None:
        """enrollment._adaptive_slots_claim: the new participant's ordinal, or None when turned away."""
        if self.estimate.stop or self._cap_reached():
            return None
        ordinal = self.enrolled
        rng = np.random.default_rng([self.rng_seed, ordinal])
        chosen = blocks_choose(
            block_conditions=self.layout.block_conditions, block_sizes=self.layout.block_sizes,
            free=self.layout.places - self.filled - self.held, held=self.held, half_width=self.estimate.half_width,
            n_answers=self.estimate.n_answers, done=self.estimate.done, goal=self.goal,
            blocks=self.layout.blocks_per_participant, rng=rng,
        )
        if not chosen:  # nothing stored: the ordinal is not used
            return None
        self.enrolled += 1
        self.held[chosen] += 1
        self.sessions[ordinal] = list(chosen)
        self.under_way.add(ordinal)
        return ordinal

    def items_of(self, ordinal: int) -> np.ndarray:
        """A session's main trials (items), block by block in the order chosen."""
        return np.concatenate([self.layout.block_items[b] for b in self.sessions[ordinal]])

    def abandon(self, ordinal: int) -> bool:
        """session.participant_leave, or a timed-out reservation (enrollment.reservations_release_expired): the
        places are free again, then adaptive.survey_adaptive_refresh. Returns whether it re-estimated."""
        self.under_way.remove(ordinal)
        self.held[self.sessions[ordinal]] -= 1
        return self._refresh()

    def complete(self, ordinal: int, correct: np.ndarray) -> bool:
        """session.participant_complete then adaptive.survey_adaptive_refresh (``correct``: one per item of
        ``items_of``). Returns whether it re-estimated."""
        self.under_way.remove(ordinal)
        blocks = self.sessions[ordinal]
        self.held[blocks] -= 1
        self.filled[blocks] += 1
        self.completed += 1
        items = self.items_of(ordinal)
        stop = slice(self._size, self._size + items.size)
        self._answers["correct"][stop] = correct
        self._answers["person"][stop] = ordinal
        self._answers["item"][stop] = items
        self._answers["cond"][stop] = self._item_condition[items]
        self._size += items.size
        return self._refresh()

    def _refresh(self) -> bool:
        """adaptive.survey_adaptive_refresh: re-estimate when ``estimate_due`` says so."""
        unfilled = self.layout.places - self.filled
        due = estimate_due(
            completed=self.completed, completed_at_estimate=self.estimate.completed, every=self.every,
            stopped=self.estimate.stop, goal_pending=self.estimate.reason == "goal_pending",
            places_left=useful_places_left(block_conditions=self.layout.block_conditions, unfilled=unfilled,
                                           done=self.estimate.done),
        )
        if not due:
            return False
        half_width, n_answers = self.intervals_arrays()
        verdict = collection_verdict(
            half_width=half_width, goal=self.goal, n_answers=n_answers, n_participants=self.completed,
            cap_participants=self.cap_participants, block_conditions=self.layout.block_conditions,
            unfilled=unfilled, under_way=bool(self.under_way),
            stopped_reason=self.estimate.reason if self.estimate.stop else "",
        )
        if verdict.stop and not self.estimate.stop:
            self.stopped_after = self.completed
        # the state stores the half-widths rounded (enrollment reads them); the verdict saw them unrounded
        self.estimate = Estimate(half_width=np.round(half_width, 6), n_answers=n_answers, done=verdict.done,
                                 completed=self.completed, stop=verdict.stop, reason=verdict.reason)
        return True

    def intervals(self):
        """condition_intervals on every completed answer (adaptive.adaptive_estimate)."""
        a = {name: values[:self._size] for name, values in self._answers.items()}
        return condition_intervals(correct=a["correct"], participants=a["person"], items=a["item"],
                                   conditions=a["cond"], n_conditions=self.layout.n_conditions)

    def intervals_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(half-width, answers) per set."""
        intervals = self.intervals()
        return (np.array([i.half_width for i in intervals]),
                np.array([i.n_answers for i in intervals], dtype=np.int64))

    @property
    def answers(self) -> int:
        return self._size


def collection_simulate(*, layout: BlockLayout, goal: float, rng_seed: int, schedule: list[tuple[str, str]],
                        answer: Callable[[int, np.ndarray], np.ndarray], cap_participants: int | None = None,
                        every: int = 1) -> dict:
    """Replay a scripted schedule of ("enroll" | "complete" | "abandon", person name) with ``answer(ordinal,
    items) -> correct`` (one bool per item). Returns each person's ordinal and blocks (None when turned away),
    and after each event whether collection has stopped and why."""
    collection = Collection(layout=layout, goal=goal, rng_seed=rng_seed, cap_participants=cap_participants,
                            every=every)
    people: dict[str, int | None] = {}
    after: list[dict] = []
    for action, name in schedule:
        if action == "enroll":
            people[name] = collection.enroll()
        elif action == "complete":
            ordinal = people[name]
            collection.complete(ordinal, answer(ordinal, collection.items_of(ordinal)))
        elif action == "abandon":
            collection.abandon(people[name])
        else:
            raise ValueError(f"schedule: unknown action {action!r}")
        after.append({"stop": collection.estimate.stop, "reason": collection.estimate.reason,
                      "completed_at_estimate": collection.estimate.completed})
    return {
        "people": {name: (None if o is None else {"ordinal": o, "blocks": collection.sessions[o]})
                   for name, o in people.items()},
        "after": after, "collection": collection,
    }
