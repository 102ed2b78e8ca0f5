"""Alignment statistics on plain arrays: numpy, and scipy.sparse for the bootstrap. No Django, no querysets, no torch.

Every function takes flat arrays (one entry per answer, or per item) and returns numbers with their
uncertainty. Where a number cannot be computed (no answers, zero variance) it is ``None``, never NaN.

Vocabulary
- answer: one response of one participant to one trial; ``correct`` = it chose the target (2AFC) or
  the right reference (clustering).
- item: a trial (the same query and options for everyone who saw it).
- unit: what the bootstrap resamples on the stimulus side (the service passes the target photo, so
  conditions that share target photos are compared *paired*; without units the item is the unit).
- condition: backbone x checkpoint x training x recipe x seed kind x layer (an int code here).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import sparse

Z95 = 1.959963984540054

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


def finite_or_none(value) -> float | None:
    """A plain float, or None for NaN/inf/None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def dense_codes(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Map arbitrary non-negative ids to 0..K-1 (order kept) without sorting when the ids are small."""
    dense, uniques = dense_codes_with_values(codes)
    return dense, int(uniques.size)


def dense_codes_with_values(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes mapped to 0..K-1 in sorted order, the K distinct values): a bincount instead of a sort for small ids."""
    codes = np.asarray(codes)
    if codes.size == 0:
        return codes.astype(np.int64), codes.astype(np.int64)
    low, high = int(codes.min()), int(codes.max())
    if low >= 0 and high < 50_000_000:
        used = np.bincount(codes, minlength=high + 1) > 0
        remap = np.cumsum(used) - 1
        return remap[codes].astype(np.int64), np.flatnonzero(used)
    uniques, inverse = np.unique(codes, return_inverse=True)
    return inverse.astype(np.int64), uniques


# ---------------------------------------------------------------------------------------------
# Intervals


def wilson_interval(successes: int, n: int, *, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval for a binomial share (answers treated as independent)."""
    if n <= 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact bounds at the edges (no rounding residue)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return float(low), float(high)


# Resamples are drawn in chunks (the same chunks whatever the method, so "sparse" and "exact" see the same
# draws) and the (condition, participant) rows are processed in blocks, so memory stays a few tens of MB.
_DRAW_BUDGET = 8_000_000  # counts per chunk of resamples (units x resamples)
_BLOCK_BUDGET = 2_000_000  # floats per block of rows (rows x resamples)
_MAX_CHUNK = 256


def _chunk_size(n_units: int, n_boot: int) -> int:
    return max(1, min(n_boot, _MAX_CHUNK, _DRAW_BUDGET // max(n_units, 1)))


def multinomial_counts(rng: np.random.Generator, n_units: int, n_boot: int) -> np.ndarray:
    """(n_units, n_boot) float32: how often each unit is drawn when n_units units are drawn with replacement,
    one column per resample (each column sums to n_units). One bincount of uniform draws per resample."""
    draws = rng.integers(0, n_units, size=(n_boot, n_units), dtype=np.int32 if n_units < 2**31 else np.int64)
    counts = np.empty((n_boot, n_units), dtype=np.float32)
    for b in range(n_boot):  # a loop over resamples (a bincount each stays in cache; one over all does not)
        counts[b] = np.bincount(draws[b], minlength=n_units)
    return np.ascontiguousarray(counts.T)


def _resample_chunks(rng: np.random.Generator, n_p: int, n_u: int, n_boot: int):
    """(start, stop, participant counts (n_p, k), unit counts (n_u, k)) per chunk of k resamples, in a fixed order."""
    chunk = _chunk_size(max(n_p, n_u), n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        w_p = multinomial_counts(rng, n_p, stop - start)
        w_u = multinomial_counts(rng, n_u, stop - start) if n_u > 1 else np.ones((1, stop - start), dtype=np.float32)
        yield start, stop, w_p, w_u


def _percentiles(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of (n_boot, k) draws, ignoring NaN (resamples without data)."""
    tail = (1 - level) / 2 * 100
    out_low = np.full(draws.shape[1], np.nan)
    out_high = np.full(draws.shape[1], np.nan)
    ok = ~np.isnan(draws).all(axis=0)
    if ok.any():
        low, high = np.nanpercentile(draws[:, ok], [tail, 100 - tail], axis=0)
        out_low[ok], out_high[ok] = low, high
    return out_low, out_high


def bootstrap_shares(
    correct: np.ndarray,
    participants: np.ndarray,
    units: np.ndarray | None,
    conditions: np.ndarray,
    n_conditions: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    method: str = "sparse",
) -> np.ndarray:
    """(n_boot, n_conditions) bootstrap replicates of the share correct per condition: the two-way bootstrap.

    Each resample draws the participants with replacement (multinomial counts w_p, summing to the number of
    participants) and, independently, the units (counts w_u); an answer of participant p on unit u then
    counts w_p * w_u times:  share*_c = sum_answers w_p w_u y / sum_answers w_p w_u  over the condition's
    answers. Participants and units are drawn once per resample for all conditions, so the replicates of
    two conditions are paired wherever they share people or stimuli, and ``a - b`` over the replicates is a
    paired difference. Without units only participants are resampled (the one-way cluster bootstrap).
    A replicate in which no answer of a condition was drawn is NaN there. Seeded: same data, same seed,
    same replicates.

    method "sparse" (default): per condition, sparse participant x unit matrices of hits H_c and answers N_c
    (repeated answers to one cell summed), so the numerator is w_pᵀ H_c w_u and the denominator w_pᵀ N_c w_u,
    for a chunk of resamples at once: cost O(resamples x distinct (condition, participant, unit) cells), no
    per-answer Python objects.
    method "exact": the same sums taken answer by answer (O(resamples x answers) memory); for checking.
    """
    correct = np.asarray(correct, dtype=np.float32)
    conditions = np.asarray(conditions, dtype=np.int64)
    out = np.full((n_boot, n_conditions), np.nan)
    if correct.size == 0:
        return out
    p_idx, n_p = dense_codes(participants)
    u_idx, n_u = dense_codes(units) if units is not None else (np.zeros(correct.size, dtype=np.int64), 1)
    rng = np.random.default_rng(seed)
    hits = np.zeros((n_boot, n_conditions))
    answers = np.zeros((n_boot, n_conditions))
    if method == "exact":
        for start, stop, w_p, w_u in _resample_chunks(rng, n_p, n_u, n_boot):
            weight = w_p[p_idx].astype(np.float64) * w_u[u_idx]  # (answers, k)
            for c in np.unique(conditions):
                mine = conditions == c
                answers[start:stop, c] = weight[mine].sum(axis=0)
                hits[start:stop, c] = (weight[mine] * correct[mine, None]).sum(axis=0)
    elif method == "sparse":
        rows_per_block = max(1, _BLOCK_BUDGET // _chunk_size(max(n_p, n_u), n_boot))
        blocks = _cell_blocks(correct, p_idx, n_p, u_idx, n_u, conditions, rows_per_block=rows_per_block)
        for start, stop, w_p, w_u in _resample_chunks(rng, n_p, n_u, n_boot):
            for block in blocks:
                people = w_p[block.participant]  # (rows, k): the count of each row's participant
                # per row: hits (answers) on each unit times the unit's count, times the participant's count;
                # then summed over each condition's rows (float32 sums of small integers: exact below 2**24)
                k_rows = block.hits @ w_u
                k_rows *= people
                n_rows = block.answers @ w_u
                n_rows *= people
                hits[start:stop, block.conditions] += (block.segments @ k_rows).T
                answers[start:stop, block.conditions] += (block.segments @ n_rows).T
    else:
        raise ValueError(f"unknown bootstrap method {method!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(hits, answers, out=out, where=answers > 0)
    return out


@dataclass(frozen=True)
class _CellBlock:
    """Consecutive (condition, participant) rows: answers and hits per unit (sparse), each row's participant,
    the conditions present, and a sparse (conditions x rows) indicator that sums rows into their condition."""

    answers: sparse.csr_matrix
    hits: sparse.csr_matrix
    participant: np.ndarray
    conditions: np.ndarray
    segments: sparse.csr_matrix


def _cell_blocks(correct, p_idx, n_p, u_idx, n_u, conditions, *, rows_per_block: int) -> list[_CellBlock]:
    """The answers as (condition, participant) x unit count matrices (duplicates summed), cut into row blocks."""
    row_of_answer, row_keys = dense_codes_with_values(conditions * n_p + p_idx)  # rows sorted by condition
    n_rows = row_keys.size
    shape = (n_rows, n_u)
    answers = sparse.csr_matrix((np.ones(correct.size, dtype=np.float32), (row_of_answer, u_idx)), shape=shape)
    hits = sparse.csr_matrix((correct, (row_of_answer, u_idx)), shape=shape)
    hits.eliminate_zeros()
    row_condition, row_participant = row_keys // n_p, row_keys % n_p
    blocks = []
    for first in range(0, n_rows, rows_per_block):
        last = min(n_rows, first + rows_per_block)
        present, local = np.unique(row_condition[first:last], return_inverse=True)
        segments = sparse.csr_matrix(
            (np.ones(last - first, dtype=np.float32), (local, np.arange(last - first))), shape=(present.size, last - first)
        )
        blocks.append(_CellBlock(answers[first:last], hits[first:last], row_participant[first:last], present, segments))
    return blocks


@dataclass(frozen=True)
class Alignment:
    """Share of answers that chose the target, with a 95 % bootstrap CI and a Wilson interval."""

    alignment: float | None
    ci_low: float | None
    ci_high: float | None
    n_answers: int
    n_participants: int
    n_items: int = 0
    n_correct: int = 0
    wilson_low: float | None = None
    wilson_high: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ConditionTable:
    """Per-condition alignment (arrays of length n_conditions) and the bootstrap replicates behind the CIs."""

    estimates: list[Alignment]
    draws: np.ndarray = field(repr=False)  # (n_boot, n_conditions)
    level: float = 0.95


def condition_alignment(
    correct: np.ndarray,
    participants: np.ndarray,
    items: np.ndarray,
    conditions: np.ndarray,
    n_conditions: int,
    *,
    units: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    method: str = "sparse",
) -> ConditionTable:
    """Alignment per condition: share correct, n of answers/participants/items, bootstrap CI, Wilson interval.

    The bootstrap is two-way: participants and units (``units`` if given, else the items).
    """
    correct = np.asarray(correct, dtype=bool)
    participants, items, conditions = (np.asarray(a) for a in (participants, items, conditions))
    if not (correct.shape == participants.shape == items.shape == conditions.shape):
        raise ValueError("correct, participants, items and conditions must have the same length")
    units = items if units is None else np.asarray(units)
    draws = bootstrap_shares(correct, participants, units, conditions, n_conditions, n_boot=n_boot, seed=seed, method=method)
    low, high = _percentiles(draws, level)
    k = np.bincount(conditions, weights=correct, minlength=n_conditions)
    n = np.bincount(conditions, minlength=n_conditions)
    n_people = _distinct_per_condition(participants, conditions, n_conditions)
    n_items = _distinct_per_condition(items, conditions, n_conditions)
    estimates = []
    for c in range(n_conditions):
        if n[c] == 0:
            estimates.append(Alignment(None, None, None, 0, 0))
            continue
        w_low, w_high = wilson_interval(int(k[c]), int(n[c]))
        estimates.append(
            Alignment(
                alignment=float(k[c] / n[c]),
                ci_low=finite_or_none(low[c]),
                ci_high=finite_or_none(high[c]),
                n_answers=int(n[c]),
                n_participants=int(n_people[c]),
                n_items=int(n_items[c]),
                n_correct=int(k[c]),
                wilson_low=w_low,
                wilson_high=w_high,
            )
        )
    return ConditionTable(estimates, draws, level)


def _distinct_per_condition(codes: np.ndarray, conditions: np.ndarray, n_conditions: int) -> np.ndarray:
    if codes.size == 0:
        return np.zeros(n_conditions, dtype=np.int64)
    dense, k = dense_codes(codes)
    seen = np.bincount(conditions.astype(np.int64) * k + dense, minlength=n_conditions * k).reshape(n_conditions, k) > 0
    return seen.sum(axis=1)


def alignment_estimate(
    chose_target: np.ndarray,
    participants: np.ndarray,
    items: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Alignment:
    """One condition: point estimate, percentile bootstrap CI (over participants, and items when given)."""
    chose_target = np.asarray(chose_target, dtype=bool)
    participants = np.asarray(participants)
    if chose_target.shape != participants.shape:
        raise ValueError("chose_target and participants must have the same length")
    if chose_target.size == 0:
        return Alignment(None, None, None, 0, 0)
    one = np.zeros(chose_target.size, dtype=np.int64)
    draws = bootstrap_shares(chose_target, participants, items, one, 1, n_boot=n_boot, seed=seed)
    low, high = _percentiles(draws, level)
    k, n = int(chose_target.sum()), int(chose_target.size)
    w_low, w_high = wilson_interval(k, n)
    n_items = int(np.unique(items).size) if items is not None else 0
    return Alignment(
        k / n, finite_or_none(low[0]), finite_or_none(high[0]), n, int(np.unique(participants).size), n_items, k, w_low, w_high
    )


def difference_interval(draws_a: np.ndarray, draws_b: np.ndarray, *, level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile CI of a - b from paired bootstrap replicates (resamples where either is missing are dropped)."""
    diff = np.asarray(draws_a) - np.asarray(draws_b)
    diff = diff[~np.isnan(diff)]
    if diff.size == 0:
        return None, None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diff, [tail, 100 - tail])
    return float(low), float(high)


# ---------------------------------------------------------------------------------------------
# Exclusions


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


# ---------------------------------------------------------------------------------------------
# Agreement between raters


# Fleiss' kappa counts, per item, raters who chose the target and raters who chose a foil: the agreement between
# people about being right. Option indices (or screen positions) as categories would measure the alignment rate
# instead: independent raters who each choose the target with p = 0.9 agree on the option most of the time.
KAPPA_CATEGORIES = {
    "2afc": ("chose_target", "chose_foil"),
    "cluster": ("chose_right_reference", "chose_other_reference"),
    "classification": ("named_the_category", "named_another_category"),
}
KAPPA_NO_ITEMS = "Not enough data: no item has two ratings."
KAPPA_ONE_CATEGORY = "Undefined: every rating falls in one category ({category}), so agreement expected by chance is 1."


def rating_counts(items: np.ndarray, choices: np.ndarray, n_items: int, n_categories: int) -> np.ndarray:
    """(n_items, n_categories) how many raters chose each category for each item (items: dense 0..n-1)."""
    items = np.asarray(items, dtype=np.int64)
    choices = np.asarray(choices, dtype=np.int64)
    return np.bincount(items * n_categories + choices, minlength=n_items * n_categories).reshape(n_items, n_categories)


def correctness_counts(items: np.ndarray, correct: np.ndarray, n_items: int) -> np.ndarray:
    """(n_items, 2): per item, how many raters chose the target (column 0) and how many chose a foil (column 1);
    the categories of Fleiss' kappa (KAPPA_CATEGORIES)."""
    correct = np.asarray(correct, dtype=bool)
    return rating_counts(items, (~correct).astype(np.int64), n_items, 2)


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa over the items with >= 2 ratings (rows: items, columns: categories).

    Items may have different numbers of raters: P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)),
    P_bar = mean_i P_i, p_j = sum_i n_ij / sum_i n_i, P_e = sum_j p_j^2, kappa = (P_bar - P_e) / (1 - P_e).
    None when no item has two ratings or every rating falls in one category (P_e = 1).
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_i = counts.sum(axis=1)
    counts, n_i = counts[n_i >= 2], n_i[n_i >= 2]
    if counts.shape[0] == 0:
        return None
    p_i = ((counts**2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_j = counts.sum(axis=0) / n_i.sum()
    p_e = float((p_j**2).sum())
    if p_e >= 1.0:
        return None
    return float((p_i.mean() - p_e) / (1 - p_e))


@dataclass(frozen=True)
class Kappa:
    """Fleiss' kappa with the categories it was computed over, the items it used (>= 2 ratings) and their raters."""

    value: float | None
    categories: tuple[str, ...]
    items: int
    raters_per_item: dict | None  # min, median, max over the items used
    note: str = ""

    def as_dict(self) -> dict:
        out = asdict(self)
        out["categories"] = list(self.categories)
        return out


def agreement_kappa(counts: np.ndarray, *, categories: tuple[str, ...]) -> Kappa:
    """Fleiss' kappa of a (items x categories) count table, named by its categories, with a note when undefined."""
    counts = np.asarray(counts)
    if counts.shape[1:] != (len(categories),):
        raise ValueError(f"the count table has {counts.shape[1:]} columns for {len(categories)} categories")
    n_i = counts.sum(axis=1)
    used = n_i[n_i >= 2]
    raters = {"min": int(used.min()), "median": float(np.median(used)), "max": int(used.max())} if used.size else None
    value = fleiss_kappa(counts)
    note = ""
    if not used.size:
        note = KAPPA_NO_ITEMS
    elif value is None:
        note = KAPPA_ONE_CATEGORY.format(category=categories[int(counts[n_i >= 2].sum(axis=0).argmax())])
    return Kappa(value, tuple(categories), int(used.size), raters, note)


def plurality_correct(counts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per item: 1 if the most chosen option is the target, 0 if another option, -1 if tied or unrated.

    counts are over option indices (rating_counts of the answers' `choice`, the canonical option, never the screen
    position): the human majority's answer is the option most raters chose (with three options, a plurality that
    need not be half of the raters), and the item counts as right when that option is the target.
    """
    counts = np.asarray(counts)
    top = counts.max(axis=1)
    unique_top = (counts == top[:, None]).sum(axis=1) == 1
    winner = counts.argmax(axis=1)
    out = np.where(winner == np.asarray(target), 1, 0)
    return np.where(unique_top & (top > 0), out, -1)


# ---------------------------------------------------------------------------------------------
# Error consistency (Geirhos, Meding & Wichmann 2020; model-vs-human)


@dataclass(frozen=True)
class ErrorConsistency:
    kappa: float | None
    c_obs: float | None
    c_exp: float | None
    p_1: float | None
    p_2: float | None
    n_trials: int

    def as_dict(self) -> dict:
        return asdict(self)


def error_consistency_from_rates(*, p_1: float, p_2: float, c_obs: float) -> tuple[float, float]:
    """(kappa, c_exp) from two accuracies and the observed consistency; kappa = 1 when c_obs = 1."""
    c_exp = p_1 * p_2 + (1 - p_1) * (1 - p_2)
    if c_obs >= 1.0:
        return 1.0, c_exp
    return (c_obs - c_exp) / (1 - c_exp), c_exp


def error_consistency(correct_1: np.ndarray, correct_2: np.ndarray) -> ErrorConsistency:
    """Trial-level error consistency of two decision makers on the same trials (bool arrays, same order)."""
    a = np.asarray(correct_1, dtype=bool)
    b = np.asarray(correct_2, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("both decision makers must answer the same trials")
    if a.size == 0:
        return ErrorConsistency(None, None, None, None, None, 0)
    p_1, p_2, c_obs = float(a.mean()), float(b.mean()), float((a == b).mean())
    kappa, c_exp = error_consistency_from_rates(p_1=p_1, p_2=p_2, c_obs=c_obs)
    return ErrorConsistency(float(kappa), c_obs, float(c_exp), p_1, p_2, int(a.size))


# ---------------------------------------------------------------------------------------------
# Human ceiling


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """Reliability of a test `factor` times as long: factor * r / (1 + (factor - 1) * r)."""
    return factor * r / (1 + (factor - 1) * r)


@dataclass(frozen=True)
class Ceiling:
    ceiling: float | None  # Spearman-Brown corrected split-half correlation of per-item accuracy
    split_half_r: float | None
    n_items: int
    n_splits: int
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


CEILING_TOO_SMALL = "Not enough data: the split-half ceiling needs at least two participants and three items{where}."
CEILING_NO_VARIANCE = (
    "Not enough data: per-item accuracy does not vary between items, or fewer than three items were rated in both halves."
)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _pearson_by_group(x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of x and y within each group (NaN where undefined) and the number of points per group."""
    m = np.bincount(groups, minlength=n_groups)
    safe = np.maximum(m, 1)
    dx = x - (np.bincount(groups, weights=x, minlength=n_groups) / safe)[groups]
    dy = y - (np.bincount(groups, weights=y, minlength=n_groups) / safe)[groups]
    sxy = np.bincount(groups, weights=dx * dy, minlength=n_groups)
    sxx = np.bincount(groups, weights=dx * dx, minlength=n_groups)
    syy = np.bincount(groups, weights=dy * dy, minlength=n_groups)
    denom = np.sqrt(sxx * syy)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(denom > 1e-12, sxy / np.where(denom > 1e-12, denom, 1.0), np.nan)
    return r, m


def split_half_ceilings(
    correct: np.ndarray,
    participants: np.ndarray,
    items: np.ndarray,
    conditions: np.ndarray,
    n_conditions: int,
    *,
    n_splits: int = 100,
    seed: int = 0,
) -> tuple[Ceiling, list[Ceiling]]:
    """The split-half human ceiling over all items and per condition, Spearman-Brown corrected.

    In each of n_splits random splits, every condition's participants are split into two halves (⌊n/2⌋ and
    the rest). Per item, the accuracy in one half is correlated (Pearson) with the accuracy in the other,
    over the items rated in both halves: per condition over its own items, and over all items for the
    survey-wide figure. r is averaged over the splits where it is defined and stepped up with Spearman-Brown
    (factor 2: the reliability of the whole group of raters). Items are per condition: an item answered in
    two conditions counts as two items. A condition that cannot be split says so in ``note``.
    """
    correct = np.asarray(correct, dtype=np.float64)
    conditions = np.asarray(conditions, dtype=np.int64)
    p_idx, n_p = dense_codes(participants)
    i_idx, n_i = dense_codes(items)
    pair_of, pair_keys = dense_codes_with_values(conditions * max(n_p, 1) + p_idx)  # (condition, participant)
    cell_of, cell_keys = dense_codes_with_values(conditions * max(n_i, 1) + i_idx)  # (condition, item)
    pair_cond, cell_cond = pair_keys // max(n_p, 1), cell_keys // max(n_i, 1)
    people = np.bincount(pair_cond, minlength=n_conditions)
    n_items = np.bincount(cell_cond, minlength=n_conditions)
    first_pair = np.cumsum(people) - people  # pairs are sorted by condition
    n_cells = cell_keys.size
    r_sum = np.zeros(n_conditions)  # sum of r over the splits where it is defined, per condition
    r_n = np.zeros(n_conditions, dtype=np.int64)  # how many such splits
    used = np.zeros(n_conditions, dtype=np.int64)  # items rated in both halves (the most over the splits)
    overall_r, overall_used = [], 0
    if ((people >= 2) & (n_items >= 3)).any():
        rng = np.random.default_rng(seed)
        base = float(np.bincount(cell_of).max() + 1)  # hits and answers in one bincount: weight = base * 1 + correct
        weights = base + correct
        rank = np.empty(pair_keys.size, dtype=np.int64)
        for _ in range(n_splits):  # a loop over splits, each one vectorised over answers
            rank[np.argsort(pair_cond + rng.random(pair_keys.size))] = np.arange(pair_keys.size)  # shuffled within condition
            first_half = (rank - first_pair[pair_cond]) < people[pair_cond] // 2
            packed = np.bincount(cell_of * 2 + first_half[pair_of], weights=weights, minlength=2 * n_cells).reshape(n_cells, 2)
            n = np.floor(packed / base)
            k = packed - n * base
            both = (n > 0).all(axis=1)
            acc = k[both] / n[both]
            r, m = _pearson_by_group(acc[:, 0], acc[:, 1], cell_cond[both], n_conditions)
            ok = (m >= 3) & np.isfinite(r)
            r_sum[ok] += r[ok]
            r_n += ok
            used = np.maximum(used, np.where(ok, m, 0))
            r_all, m_all = _pearson_by_group(acc[:, 0], acc[:, 1], np.zeros(int(both.sum()), dtype=np.int64), 1)
            if m_all[0] >= 3 and np.isfinite(r_all[0]):
                overall_r.append(float(r_all[0]))
                overall_used = max(overall_used, int(m_all[0]))

    def ceiling(r_values_sum: float, count: int, items_used: int, items_total: int, too_small: bool, where: str) -> Ceiling:
        if too_small:
            return Ceiling(None, None, items_total, 0, CEILING_TOO_SMALL.format(where=where))
        if count == 0:
            return Ceiling(None, None, items_total, n_splits, CEILING_NO_VARIANCE)
        r = r_values_sum / count
        return Ceiling(finite_or_none(spearman_brown(r)), float(r), items_used, count)

    overall = ceiling(sum(overall_r), len(overall_r), overall_used, n_cells, n_p < 2 or n_cells < 3, "")
    per_condition = [
        ceiling(r_sum[c], int(r_n[c]), int(used[c]), int(n_items[c]), people[c] < 2 or n_items[c] < 3,
                f"; this condition has {_count(people[c], 'participant')} and {_count(n_items[c], 'item')}")
        for c in range(n_conditions)
    ]
    return overall, per_condition


def split_half_ceiling(
    correct: np.ndarray, participants: np.ndarray, items: np.ndarray, *, n_splits: int = 100, seed: int = 0
) -> Ceiling:
    """Split the participants at random into two halves; correlate per-item accuracy between the halves
    (Pearson, over items rated in both halves); average r over the splits; correct with Spearman-Brown."""
    correct = np.asarray(correct)
    one_condition = np.zeros(correct.size, dtype=np.int64)
    overall, _ = split_half_ceilings(correct, participants, items, one_condition, 1, n_splits=n_splits, seed=seed)
    return overall
