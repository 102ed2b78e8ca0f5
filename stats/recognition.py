"""Recognition (timed classification, Feather et al. 2023 metamers) on plain arrays: numpy only, no Django.

One entry per included main-trial answer:
- ``correct``: the person chose the stimulus's category;
- ``network_correct``: the network's classification of *that same stimulus* is the stimulus's category (the
  network answers exactly the stimuli each person saw, so its accuracy is weighted as they were seen);
- ``participants``, ``items`` (stimulus ids), ``conditions`` (int codes 0..K-1: backbone × checkpoint × layer ×
  recipe), and ``n_categories`` (the number of response buttons; chance = 1 / n_categories).

Per condition: human accuracy with the two-way (participant × item) percentile bootstrap CI of the alignment
report, chance, the network's accuracy on the same answers and on the distinct items, and the model-vs-human
trio: accuracy difference (human − network), observed consistency c_obs and error consistency κ (Geirhos,
Meding & Wichmann 2020). Human, network, difference, c_obs and κ intervals come from the *same* resamples
(one seed: every bootstrap here draws the same participant and item counts), so they are paired.
Anything that cannot be computed is ``None`` (never NaN) and the row's ``note`` says why.
"""
from __future__ import annotations

import numpy as np

from .agreement import error_consistency
from .alignment import condition_alignment, dense_codes, finite_or_none

NO_ANSWERS = "No answers yet."
ONE_PARTICIPANT = "Only one participant: the intervals reflect item variation only."
NO_INTERVAL = "No interval: too little data to resample."
KAPPA_UNDEFINED = (
    "Error consistency undefined: {who} {what} on every answer in this condition, so there are no errors to be "
    "consistent with (κ would be 0, or 0/0, whatever the other does)."
)
NETWORK_ITEM_MIXED = (
    "network_correct differs between answers to the same stimulus for {n} item(s); the per-item network accuracy "
    "counts each such item at its mean."
)
CI_TEXT = (
    "{pct} % percentile bootstrap, {n_boot} resamples (seed {seed}), two-way as in the alignment report: each "
    "resample draws the participants and, independently, the {unit} with replacement, and an answer counts "
    "w_participant × w_{unit_one} times; human accuracy, network accuracy, their difference, c_obs and κ are "
    "computed on the same resamples (paired)."
)


def _chance(n_categories, n_answers: int, conditions: np.ndarray, n_conditions: int):
    """(chance per condition (NaN where unknown), n_categories per condition (0 where mixed or unknown)).

    n_categories: one number for everything, one per answer, or one per condition (per answer wins when the two
    lengths coincide; pass per-answer values, ``per_condition[conditions]``, to be unambiguous). Where the answers
    of one condition had different numbers of buttons, chance is the mean of 1/n_categories over its answers.
    """
    values = np.asarray(n_categories)
    if values.ndim == 0:
        values = np.full(n_conditions, int(values))
        per_answer = False
    elif values.shape == (n_answers,):
        per_answer = True
    elif values.shape == (n_conditions,):
        per_answer = False
    else:
        raise ValueError(
            f"n_categories must be one number, one per answer ({n_answers}) or one per condition ({n_conditions}); "
            f"got shape {values.shape}"
        )
    if values.size and (values < 2).any():
        raise ValueError("a classification needs at least 2 categories")
    values = values.astype(np.float64)
    if not per_answer:
        return 1.0 / values, values.astype(np.int64)
    n = np.bincount(conditions, minlength=n_conditions)
    with np.errstate(divide="ignore", invalid="ignore"):
        chance = np.bincount(conditions, weights=1.0 / values, minlength=n_conditions) / n
        low = np.full(n_conditions, np.inf)
        high = np.full(n_conditions, -np.inf)
    np.minimum.at(low, conditions, values)
    np.maximum.at(high, conditions, values)
    same = (n > 0) & (low == high)
    return chance, np.where(same, high, 0).astype(np.int64)


def _kappa_of_rates(c_obs: np.ndarray, p_h: np.ndarray, p_n: np.ndarray) -> np.ndarray:
    """κ from arrays of rates (per resample or per participant): NaN where there are no answers or an observer is
    always right or always wrong."""
    c_exp = p_h * p_n + (1 - p_h) * (1 - p_n)
    degenerate = ~((p_h > 0) & (p_h < 1) & (p_n > 0) & (p_n < 1))  # NaN compares False: counted as degenerate
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (c_obs - c_exp) / (1 - c_exp)
    return np.where(degenerate, np.nan, kappa)


def _interval(draws: np.ndarray, level: float) -> tuple[float | None, float | None]:
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return None, None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def _kappa_note(p_h: float, p_n: float) -> str:
    for who, p in (("the network", p_n), ("people", p_h)):
        if p >= 1.0:
            return KAPPA_UNDEFINED.format(who=who, what="is right" if who == "the network" else "are right")
        if p <= 0.0:
            return KAPPA_UNDEFINED.format(who=who, what="is wrong" if who == "the network" else "are wrong")
    return ""


def _participant_kappas(h, n, participants, conditions, n_conditions) -> tuple[np.ndarray, np.ndarray]:
    """Per condition: the mean over participants of each participant's own κ (model-vs-human's way: one κ per
    observer on their trials, then averaged), over the participants whose κ is defined; and how many those are."""
    if h.size == 0:
        return np.full(n_conditions, np.nan), np.zeros(n_conditions, dtype=np.int64)
    p_idx, n_p = dense_codes(participants)
    keys, pair = np.unique(conditions * n_p + p_idx, return_inverse=True)  # (condition, participant) pairs
    m = np.bincount(pair).astype(np.float64)
    p_h = np.bincount(pair, weights=h) / m
    p_n = np.bincount(pair, weights=n) / m
    c_obs = np.bincount(pair, weights=(h == n)) / m
    kappa = _kappa_of_rates(c_obs, p_h, p_n)  # c_obs = 1 with both accuracies inside (0, 1) gives 1 (up to rounding)
    ok = ~np.isnan(kappa)
    cond = keys // n_p
    count = np.bincount(cond[ok], minlength=n_conditions)
    total = np.bincount(cond[ok], weights=kappa[ok], minlength=n_conditions)
    with np.errstate(divide="ignore", invalid="ignore"):
        return total / count, count


def _checked_inputs(correct, network_correct, participants, items, conditions, n_conditions) -> tuple[np.ndarray, ...]:
    correct = np.asarray(correct, dtype=bool)
    network_correct = np.asarray(network_correct, dtype=bool)
    participants, items, conditions = (np.asarray(a) for a in (participants, items, conditions))
    conditions = conditions.astype(np.int64)
    if not (correct.shape == network_correct.shape == participants.shape == items.shape == conditions.shape):
        raise ValueError("correct, network_correct, participants, items and conditions must have the same length")
    if conditions.size and (conditions.min() < 0 or conditions.max() >= n_conditions):
        raise ValueError(f"condition codes must lie in 0..{n_conditions - 1}")
    return correct, network_correct, participants, items, conditions


def _ci_text(*, grouped: bool, level: float, n_boot: int, seed: int) -> str:
    return CI_TEXT.format(pct=f"{level * 100:g}", n_boot=n_boot, seed=seed,
                          unit="units (the stimulus groups passed as units)" if grouped else "items (stimuli)",
                          unit_one="unit" if grouped else "item")


def _network_by_item(network_correct, items, conditions, n_conditions) -> tuple[np.ndarray, np.ndarray]:
    """Per condition: the network's accuracy over the condition's distinct items, each once (the mean of its
    accuracy on each item), and how many items the network's answers disagree on (right on some, wrong on others)."""
    i_idx, n_i = dense_codes(items)
    cell, cell_keys = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    if network_correct.size:
        cell_keys, cell = np.unique(conditions * n_i + i_idx, return_inverse=True)
    seen = np.bincount(cell, minlength=cell_keys.size)
    net_hits = np.bincount(cell, weights=network_correct, minlength=cell_keys.size)
    cell_acc = net_hits / np.maximum(seen, 1)
    cell_cond = cell_keys // max(n_i, 1)
    mixed = np.bincount(cell_cond, weights=(net_hits > 0) & (net_hits < seen), minlength=n_conditions)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_items = np.bincount(cell_cond, minlength=n_conditions)
        item_acc = np.bincount(cell_cond, weights=cell_acc, minlength=n_conditions) / n_items
    return item_acc, mixed


def _row_without_network(c: int, h, *, chance: float, n_categories: int, ci_text: str) -> dict:
    """A condition's row with its human figures and every network and consistency figure empty (None, 0)."""
    return {
        "condition": c,
        "n_answers": h.n_answers,
        "n_participants": h.n_participants,
        "n_items": h.n_items,
        "n_correct": h.n_correct,
        "accuracy": h.alignment,
        "ci_low": h.ci_low,
        "ci_high": h.ci_high,
        "wilson_low": h.wilson_low,
        "wilson_high": h.wilson_high,
        "chance": finite_or_none(chance),
        "n_categories": int(n_categories) if n_categories else None,
        "network_accuracy": None,
        "network_ci_low": None,
        "network_ci_high": None,
        "network_accuracy_items": None,
        "network_n_correct": 0,
        "accuracy_difference": None,
        "difference_ci_low": None,
        "difference_ci_high": None,
        "observed_consistency": None,
        "observed_consistency_ci_low": None,
        "observed_consistency_ci_high": None,
        "expected_consistency": None,
        "error_consistency": None,
        "error_consistency_ci_low": None,
        "error_consistency_ci_high": None,
        "error_consistency_participant_mean": None,
        "error_consistency_participants": 0,
        "ci": ci_text,
        "note": "",
    }


def _row_note(h, kappa_note: str, *, n_mixed: int) -> str:
    notes = []
    if h.n_participants == 1:
        notes.append(ONE_PARTICIPANT)
    elif h.ci_low is None:
        notes.append(NO_INTERVAL)
    if kappa_note:
        notes.append(kappa_note)
    if n_mixed:
        notes.append(NETWORK_ITEM_MIXED.format(n=n_mixed))
    return " ".join(notes)


def recognition_by_condition(
    *,
    correct: np.ndarray,
    network_correct: np.ndarray,
    participants: np.ndarray,
    items: np.ndarray,
    conditions: np.ndarray,
    n_conditions: int,
    n_categories,
    units: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict]:
    """One row per condition 0..n_conditions-1 (see the module docstring for the inputs).

    - ``accuracy``: share of the condition's answers that chose the stimulus's category; ``ci_low``/``ci_high``:
      two-way percentile bootstrap over participants and items (``units`` instead of items when given, e.g. the
      source photo, so that layers made from the same photos are resampled together), the resampling of
      stats.alignment.condition_alignment; ``wilson_low``/``wilson_high`` beside it (answers independent).
    - ``chance``: 1 / n_categories (the mean over the answers where it varies); ``n_categories`` (None if mixed).
    - ``network_accuracy``: mean of network_correct over the same answers (each stimulus weighted by how often
      people saw it), with its CI; ``network_accuracy_items``: over the condition's distinct items, each once.
    - ``accuracy_difference``: accuracy − network_accuracy, with the paired bootstrap CI.
    - ``observed_consistency`` c_obs: share of answers where person and network are both right or both wrong;
      ``expected_consistency`` c_exp = p_h p_n + (1 − p_h)(1 − p_n) with the two accuracies over these answers;
      ``error_consistency`` κ = (c_obs − c_exp) / (1 − c_exp), pooled over the condition's answers, with its
      bootstrap CI (resamples where an observer is never or always right are dropped). κ is None when people or
      the network are right on every answer or wrong on every answer (κ is then 0 or 0/0 by construction).
    - ``error_consistency_participant_mean``: each participant's own κ against the network on their answers,
      averaged over the ``error_consistency_participants`` participants where it is defined (model-vs-human's
      per-observer averaging); None when no participant has one.
    - ``n_answers``, ``n_participants``, ``n_items``, ``n_correct``, ``network_n_correct``; ``ci`` (what the
      intervals resample) and ``note``.
    """
    correct, network_correct, participants, items, conditions = _checked_inputs(
        correct, network_correct, participants, items, conditions, n_conditions)
    chance, n_cat = _chance(n_categories, correct.size, conditions, n_conditions)
    args = dict(units=units, n_boot=n_boot, seed=seed, level=level)
    human = condition_alignment(correct, participants, items, conditions, n_conditions, **args)
    network = condition_alignment(network_correct, participants, items, conditions, n_conditions, **args)
    agree = condition_alignment(correct == network_correct, participants, items, conditions, n_conditions, **args)
    kappa_draws = _kappa_of_rates(agree.draws, human.draws, network.draws)
    kappa_person, kappa_people = _participant_kappas(correct, network_correct, participants, conditions, n_conditions)

    item_acc, mixed = _network_by_item(network_correct, items, conditions, n_conditions)
    ci_text = _ci_text(grouped=units is not None, level=level, n_boot=n_boot, seed=seed)
    rows = []
    for c in range(n_conditions):
        h, n = human.estimates[c], network.estimates[c]
        row = _row_without_network(c, h, chance=chance[c], n_categories=n_cat[c], ci_text=ci_text)
        if h.n_answers == 0:
            row["note"] = NO_ANSWERS
            rows.append(row)
            continue
        ec = error_consistency(correct[conditions == c], network_correct[conditions == c])
        kappa_note = _kappa_note(ec.p_1, ec.p_2)
        row.update(
            network_accuracy=n.alignment,
            network_ci_low=n.ci_low,
            network_ci_high=n.ci_high,
            network_accuracy_items=finite_or_none(item_acc[c]),
            network_n_correct=n.n_correct,
            accuracy_difference=float(h.alignment - n.alignment),
            observed_consistency=ec.c_obs,
            expected_consistency=ec.c_exp,
            error_consistency=None if kappa_note else ec.kappa,
            error_consistency_participant_mean=finite_or_none(kappa_person[c]) if kappa_people[c] else None,
            error_consistency_participants=int(kappa_people[c]),
        )
        if h.ci_low is not None:
            difference = human.draws[:, c] - network.draws[:, c]
            row["difference_ci_low"], row["difference_ci_high"] = _interval(difference, level)
            row["observed_consistency_ci_low"] = agree.estimates[c].ci_low
            row["observed_consistency_ci_high"] = agree.estimates[c].ci_high
            if not kappa_note:
                row["error_consistency_ci_low"], row["error_consistency_ci_high"] = _interval(kappa_draws[:, c], level)
        row["note"] = _row_note(h, kappa_note, n_mixed=int(mixed[c]))
        rows.append(row)
    return rows


def recognition_overall(
    *,
    correct: np.ndarray,
    network_correct: np.ndarray,
    participants: np.ndarray,
    items: np.ndarray,
    n_categories,
    units: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """recognition_by_condition over all answers as one condition (n_categories: one number or one per answer).

    Items are pooled by id: pass ids that are distinct across conditions (a stimulus belongs to one condition).
    """
    correct = np.asarray(correct)
    one = np.zeros(correct.size, dtype=np.int64)
    (row,) = recognition_by_condition(
        correct=correct, network_correct=network_correct, participants=participants, items=items, conditions=one,
        n_conditions=1, n_categories=n_categories, units=units, n_boot=n_boot, seed=seed, level=level,
    )
    row.pop("condition")
    return row
