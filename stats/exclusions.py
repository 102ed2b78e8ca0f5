"""Exclusion rules on plain arrays: which participants and main-trial answers the report leaves out, and where
people clicked (the screen positions of their answers). numpy only; the vocabulary of ``alignment``."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .alignment import finite_or_none

# Participant-level and answer-level exclusion rules, in the order reports list them.
EXCLUSION_RULES = {
    "pilot": "pilot sessions (is_pilot)",
    "bot": "bot sessions (is_bot)",
    "flagged": "flagged for exclusion by the survey (exclusion flags)",
    "incomplete": "sessions that never completed",
    "catch_accuracy": "catch-trial accuracy below the threshold",
    "one_sided": "one-sided responders: the largest share of main and catch answers on one screen position at or above the threshold",
    "rt_floor": "answers faster than the RT floor (answer level)",
}


@dataclass(frozen=True)
class ExclusionRules:
    """Thresholds of the exclusion rules. one_side_max_fraction None: the one-sided rule is off."""

    catch_min_accuracy: float = 0.75
    rt_floor_ms: float = 200.0
    require_complete: bool = True
    exclude_pilot: bool = True
    exclude_bots: bool = True
    one_side_max_fraction: float | None = None
    one_side_min_trials: int = 20

    def describe(self) -> dict:
        return asdict(self)


KIND_MAIN, KIND_CATCH, KIND_PRACTICE, KIND_SCREENING = 0, 1, 2, 3


def position_counts(participant: np.ndarray, position: np.ndarray, n_people: int, n_positions: int) -> np.ndarray:
    """(n_people, n_positions): how many answers of each participant chose the option shown in each screen position
    (0 = left). Positions outside 0..n_positions-1 (-1 = not recorded) are left out."""
    participant = np.asarray(participant, dtype=np.int64)
    position = np.asarray(position, dtype=np.int64)
    known = (position >= 0) & (position < n_positions)
    cells = participant[known] * n_positions + position[known]
    return np.bincount(cells, minlength=n_people * n_positions).reshape(n_people, n_positions)


def one_sided(counts: np.ndarray, *, max_fraction: float | None, min_trials: int) -> np.ndarray:
    """Per participant (rows of position_counts): at least min_trials answers with a known position, and the largest
    share on one position >= max_fraction. All False when max_fraction is None (the rule is off)."""
    counts = np.asarray(counts)
    if max_fraction is None:
        return np.zeros(counts.shape[0], dtype=bool)
    n = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        largest = np.where(n > 0, counts.max(axis=1, initial=0) / np.maximum(n, 1), 0.0)
    return (n >= max(1, min_trials)) & (largest >= max_fraction)


def participant_rules_apply(
    *,
    participant: np.ndarray,
    kind: np.ndarray,
    correct: np.ndarray,
    participant_flags: dict[str, np.ndarray],
    rules: ExclusionRules,
    n_people: int,
    shown_position: np.ndarray | None = None,
    n_positions: int = 2,
) -> dict[str, np.ndarray]:
    """The participant-level rules that apply: rule -> bool per participant (True = excluded by that rule).

    A rule is missing from the result when it does not apply (its flag is not recorded, it is switched off, or,
    for catch_accuracy, nobody answered a catch trial). one_sided looks at main and catch answers whose screen
    position is known (shown_position >= 0).
    """
    participant = np.asarray(participant, dtype=np.int64)
    kind = np.asarray(kind)
    correct = np.asarray(correct, dtype=bool)
    flagged: dict[str, np.ndarray] = {}
    if rules.exclude_pilot and "pilot" in participant_flags:
        flagged["pilot"] = np.asarray(participant_flags["pilot"], dtype=bool)
    if rules.exclude_bots and "bot" in participant_flags:
        flagged["bot"] = np.asarray(participant_flags["bot"], dtype=bool)
    if "flagged" in participant_flags:
        flagged["flagged"] = np.asarray(participant_flags["flagged"], dtype=bool)
    if rules.require_complete and "completed" in participant_flags:
        flagged["incomplete"] = ~np.asarray(participant_flags["completed"], dtype=bool)
    catch = kind == KIND_CATCH
    if catch.any():
        n_catch = np.bincount(participant[catch], minlength=n_people)
        k_catch = np.bincount(participant[catch], weights=correct[catch], minlength=n_people)
        with np.errstate(divide="ignore", invalid="ignore"):
            accuracy = np.where(n_catch > 0, k_catch / np.maximum(n_catch, 1), 1.0)
        flagged["catch_accuracy"] = (n_catch > 0) & (accuracy < rules.catch_min_accuracy)
    if rules.one_side_max_fraction is not None:
        position = np.full(participant.size, -1, dtype=np.int64) if shown_position is None else np.asarray(shown_position)
        counted = (kind == KIND_MAIN) | catch
        counts = position_counts(participant[counted], position[counted], n_people, n_positions)
        flagged["one_sided"] = one_sided(counts, max_fraction=rules.one_side_max_fraction, min_trials=rules.one_side_min_trials)
    return flagged


def exclusions_apply(
    *,
    participant: np.ndarray,
    kind: np.ndarray,
    correct: np.ndarray,
    rt_ms: np.ndarray,
    participant_flags: dict[str, np.ndarray],
    rules: ExclusionRules,
    shown_position: np.ndarray | None = None,
    n_positions: int = 2,
    participant_rules: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Which main-trial answers stay in, and how many each rule removed.

    participant: dense index (0..P-1) per answer; kind: KIND_* per answer; participant_flags: bool arrays of
    length P for "pilot", "bot", "flagged", "completed" (missing keys: the rule does not apply);
    shown_position: the screen position of the chosen option per answer (0 = left, -1 = not recorded), for the
    one-sided rule over n_positions positions; participant_rules: participant_rules_apply's result, when the caller
    already has it (else computed here).
    Returns (included mask over answers: main, not excluded) and one count row per rule:
    {rule, description, participants, answers} where answers are main-trial answers the rule removes on its
    own (a participant can be caught by several rules; the total is reported separately by the caller).
    """
    participant = np.asarray(participant, dtype=np.int64)
    n_people = next((len(v) for v in participant_flags.values()), int(participant.max(initial=-1)) + 1)
    main = np.asarray(kind) == KIND_MAIN
    flagged_people = participant_rules if participant_rules is not None else participant_rules_apply(
        participant=participant, kind=kind, correct=correct, participant_flags=participant_flags, rules=rules,
        n_people=n_people, shown_position=shown_position, n_positions=n_positions,
    )
    excluded = np.zeros(participant.size, dtype=bool)
    counts = []
    for rule, description in EXCLUSION_RULES.items():
        if rule == "rt_floor":
            fast = main & (np.asarray(rt_ms, dtype=np.float64) < rules.rt_floor_ms)
            counts.append({"rule": rule, "description": description, "participants": int(np.unique(participant[fast]).size), "answers": int(fast.sum())})
            excluded |= fast
            continue
        people = flagged_people.get(rule)
        if people is None:
            counts.append({"rule": rule, "description": description, "participants": 0, "answers": 0, "applies": False})
            continue
        hit = people[participant] & main
        counts.append({"rule": rule, "description": description, "participants": int(people.sum()), "answers": int(hit.sum())})
        excluded |= people[participant]
    return main & ~excluded, counts


def _spread(values: np.ndarray) -> dict | None:
    """min, median and max of a non-empty array (None when empty)."""
    if values.size == 0:
        return None
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def side_summary(counts: np.ndarray, *, max_fraction: float | None, min_trials: int) -> dict:
    """Where people clicked: from position_counts (participants x screen positions, 0 = left).

    Survey-wide share of answers per position and the largest of them; per participant (those with at least one
    answer whose position is known) the spread of the position-0 share and of the largest share; how many have
    at least min_trials such answers (the one-sided rule can judge them) and how many of those are one-sided
    (None when the rule is off).
    """
    counts = np.asarray(counts)
    n = counts.sum(axis=1)
    total = counts.sum(axis=0)
    answered = n > 0
    per_person = counts[answered] / n[answered, None]
    shares = total / total.sum() if total.sum() else np.full(counts.shape[1], np.nan)
    return {
        "positions": int(counts.shape[1]),
        "answers": int(total.sum()),
        "shares": [finite_or_none(v) for v in shares],
        "largest_share": finite_or_none(shares.max()) if total.sum() else None,
        "participants": int(answered.sum()),
        "participant_position_0_share": _spread(per_person[:, 0]),
        "participant_largest_share": _spread(per_person.max(axis=1, initial=0.0)),
        "participants_judged": int((n >= max(1, min_trials)).sum()),
        "one_sided": int(one_sided(counts, max_fraction=max_fraction, min_trials=min_trials).sum()) if max_fraction is not None else None,
    }
