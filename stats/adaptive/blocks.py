"""The blocks of an adaptive survey: how its trials are cut into blocks of one IRI set, and which blocks the next
participant gets. numpy only."""
from __future__ import annotations

import math

import numpy as np

from .stopping import MIN_ANSWERS

# An adaptive survey's block: this many trials of one IRI set (a clustering screen counts as one unit), two so
# that each block shows a participant the target once on each side. Small blocks let each participant's session
# be composed, at enrollment, of the sets still above their goal, each in proportion to how far it is from it.
BLOCK_TRIALS = 2


def blocks_layout(*, trials_per_participant: int, unit_size: int) -> tuple[int, int]:
    """(units per block, blocks per participant) for a session of about ``trials_per_participant`` trials made of
    units of ``unit_size`` trials."""
    units_per_block = max(1, round(BLOCK_TRIALS / unit_size))
    units_per_participant = max(1, math.ceil(trials_per_participant / unit_size))
    return units_per_block, max(1, round(units_per_participant / units_per_block))


def blocks_split(*, units: list, condition_of, units_per_block: int) -> list[list]:
    """Cut each IRI set's units (in the order given) into blocks of ``units_per_block`` units of that set alone
    (sizes differ by at most one unit within a set, and none is larger than asked: a set of 5 trials in blocks of
    2 makes blocks of 2, 2 and 1, so that a session holds about the trials the survey asks for). Blocks come set by
    set, in order of first appearance."""
    sets: dict = {}
    for unit in units:
        sets.setdefault(condition_of(unit), []).append(unit)
    out = []
    for members in sets.values():
        n_blocks = math.ceil(len(members) / units_per_block)
        sizes = [len(members) // n_blocks + (i < len(members) % n_blocks) for i in range(n_blocks)]
        start = 0
        for size in sizes:
            out.append(members[start:start + size])
            start += size
    return out


def blocks_choose(
    *,
    block_conditions: np.ndarray,
    block_sizes: np.ndarray,
    free: np.ndarray,
    held: np.ndarray,
    half_width: np.ndarray,
    n_answers: np.ndarray,
    done: np.ndarray,
    goal: float | np.ndarray,
    blocks: int,
    rng: np.random.Generator,
) -> list[int]:
    """The blocks the next participant of an adaptive survey gets (indices into the block arrays; at most one place
    in each block, so never the same trial twice), in the order chosen; empty when no block can help.

    An adaptive survey's trials are cut into blocks of a few trials of one IRI set (``block_conditions``: the set;
    ``block_sizes``: its trials), each with N places; ``free`` counts a block's places one can claim now and
    ``held`` those held by sessions under way, whose answers are not in the estimate yet. Rule, in order:

    1. Each set's half-width is projected down by the answers under way: × sqrt((n + 1) / (n + 1 + pending)).
    2. Candidates are the sets not ``done`` that have a free block, less those waiting on answers under way (projected
       at or below the goal, from an estimate on at least MIN_ANSWERS answers): more answers now would overshoot, and
       if the sessions under way leave, their places come free and the set is a candidate again. No candidate: empty
       (nobody can help now).
    3. Candidates get one block each, widest (half-width ÷ goal) first, ties in random order from ``rng``; every
       further block goes, one at a time, to the candidate whose projected ratio, counting the blocks already
       given, × sqrt((n + 1) / (n + 1 + given answers)), is largest, which has a free block left and of which this
       participant holds fewer than ``max_blocks_per_set(blocks, sets)``: the widest interval relative to its goal,
       counting what this participant will add (half-width ∝ 1/√n). With few sets open, sessions are shorter rather
       than one person's answers piling into one set, where the differences between people weigh most.
    4. A set's blocks are taken most free places first (then lowest index), so its trials fill breadth-first.

    Deterministic given the rng's state. ``blocks``: blocks per participant (fewer when too few are free or few sets
    are open)."""
    block_conditions = np.asarray(block_conditions, dtype=np.int64)
    sizes = np.asarray(block_sizes, dtype=np.float64)
    free, held = np.asarray(free), np.asarray(held)
    half_width = np.asarray(half_width, dtype=np.float64)
    n_conditions = half_width.size
    goal = np.broadcast_to(np.asarray(goal, dtype=np.float64), half_width.shape)
    n_answers = np.asarray(n_answers, dtype=np.float64)
    done = np.asarray(done, dtype=bool)
    if blocks < 1:
        raise ValueError(f"blocks: must be at least 1; got {blocks}")
    if not np.all(goal > 0):
        raise ValueError(f"goal: every goal must be above 0; got {goal.tolist()}")
    pending = np.bincount(block_conditions, weights=held * sizes, minlength=n_conditions)
    projected = half_width / goal * np.sqrt((n_answers + 1) / (n_answers + 1 + pending))
    # projected only from an estimate that rests on MIN_ANSWERS answers (0.5 on none is no estimate at all)
    waiting = (pending > 0) & (projected <= 1) & (n_answers >= MIN_ANSWERS)
    queues = _free_blocks_by_set(block_conditions=block_conditions, free=free)
    candidates = np.array(sorted(c for c in queues if not (done[c] or waiting[c])), dtype=np.int64)
    if candidates.size == 0:
        return []
    order = rng.permutation(candidates)  # random tie order, then a stable sort by ratio (widest first)
    order = order[np.argsort(-projected[order], kind="stable")]
    per_set = max_blocks_per_set(blocks=blocks, sets=n_conditions)
    given = np.zeros(n_conditions)
    taken = np.zeros(n_conditions, dtype=np.int64)
    chosen: list[int] = []
    for c in order[:blocks]:
        b = queues[int(c)].pop(0)
        chosen.append(b)
        given[c] += sizes[b]
        taken[c] += 1
    base = projected * np.sqrt(n_answers + pending + 1)
    while len(chosen) < blocks:
        left = [int(c) for c in order if queues[int(c)] and taken[c] < per_set]
        if not left:
            break
        score = base[left] / np.sqrt(n_answers[left] + pending[left] + 1 + given[left])
        c = left[int(np.argmax(score))]  # argmax keeps the first (widest, then rng) on ties
        b = queues[c].pop(0)
        chosen.append(b)
        given[c] += sizes[b]
        taken[c] += 1
    return chosen


def _free_blocks_by_set(*, block_conditions: np.ndarray, free: np.ndarray) -> dict[int, list[int]]:
    """Each set's free blocks, most free places first, then lowest index."""
    queues: dict[int, list[int]] = {}
    for b in sorted(np.flatnonzero(free > 0).tolist(), key=lambda b: (-int(free[b]), b)):
        queues.setdefault(int(block_conditions[b]), []).append(b)
    return queues


def max_blocks_per_set(*, blocks: int, sets: int) -> int:
    """The most blocks of one IRI set a participant gets: half a session (rounded up) when the survey has two sets or
    more, so that one person's answers are at most half of what they give any set late in collection (the design
    effect grows with each person's answers to one set); the whole session when there is one set."""
    return blocks if sets < 2 else math.ceil(blocks / 2)
