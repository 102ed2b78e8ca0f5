"""Counterbalancing: where each option appears on a participant's screen.

The target's side is a Latin square over (item, rater): items of a list are put in a fixed random sequence
(seeded by the survey and list) and item i goes to side (i + rater) mod 2, where `rater` is the ordinal of the
participant's slot in the list. So every participant sees the target left and right equally often (±1, main
and catch trials each and together), and every item has its target left for half of its raters (±1). Clustering
screens rotate their three references by (screen + rater) mod 3, so each reference position is right equally
often for an item across raters; within a screen every position is right for two of its six rows.

An order is a string of option indices in screen order: "10" shows option 1 on the left.
"""
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class TrialShape:
    id: int
    kind: str  # main / catch / practice
    n_options: int
    target_option: int
    screen: str = ""


def option_orders(*, trials: list[TrialShape], rater: int, seed: str) -> dict[int, str]:
    """Trial id -> option order for the participant in slot `rater` (0, 1, …) of a list."""
    rng = random.Random(seed)
    orders: dict[int, str] = {}
    pairs = [t for t in sorted(trials, key=lambda t: t.id) if t.n_options == 2]
    for group in (("main", "catch"), ("practice",)):
        sequence = []
        for kind in group:  # main first, then catch: balanced within each and in all
            items = [t for t in pairs if t.kind == kind]
            rng.shuffle(items)
            sequence += items
        for i, t in enumerate(sequence):
            side = (i + rater) % 2
            orders[t.id] = "01" if t.target_option == side else "10"
    screens = sorted({t.screen for t in trials if t.n_options == 3})
    rng.shuffle(screens)
    rotation = {screen: (j + rater) % 3 for j, screen in enumerate(screens)}
    for t in trials:
        if t.n_options == 3:
            r = rotation[t.screen]
            orders[t.id] = "".join(str((p + r) % 3) for p in range(3))
    return orders
