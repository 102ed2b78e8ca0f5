"""The stopping rule of adaptive collection: when a condition is done, when collection stops, and when the next
estimate is due. numpy only."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# A condition counts as done only with at least this many answers: the design effect needs a few clusters, and a
# short run of zeros must not end a condition (Wilson's half-width at 0 of n is z²/(2(n+z²)): 0.05 after 35).
MIN_ANSWERS = 20

STOPPING_RULE = (
    "Adaptive stopping: after every completed session (or every few, as the survey sets), each condition's 95 % "
    "design-effect Wilson interval is recomputed; a condition is done when its half-width is at or below its goal "
    "and it has at least {min_answers} answers; done conditions, and conditions the sessions under way will bring "
    "to their goal, get no more trials; collection stops when every condition is done with no session under way, "
    "or the cap is reached."
)


def conditions_done(
    *, half_width: np.ndarray, goal: float | np.ndarray, n_answers: np.ndarray, min_answers: int = MIN_ANSWERS
) -> np.ndarray:
    """Per condition: its half-width is at or below its goal and it has at least min_answers answers."""
    half_width = np.asarray(half_width, dtype=np.float64)
    goal = np.broadcast_to(np.asarray(goal, dtype=np.float64), half_width.shape)
    return (half_width <= goal) & (np.asarray(n_answers) >= min_answers)


@dataclass(frozen=True)
class Stop:
    """The stopping rule's verdict: stop or not, why ("goal", "cap_participants", "cap_answers", or "" to go on),
    and which conditions are done."""

    stop: bool
    reason: str
    done: np.ndarray = field(repr=False)


def stopping_rule_describe(
    *, goal: float | np.ndarray, cap_participants: int | None = None, cap_answers: int | None = None,
    min_answers: int = MIN_ANSWERS,
) -> str:
    """The stopping rule in words, for the report: ``STOPPING_RULE`` with the goal and the caps filled in."""
    goals = np.unique(np.asarray(goal, dtype=np.float64))
    goal_text = f"{goals[0]:g}" if goals.size == 1 else "per condition (" + ", ".join(f"{g:g}" for g in goals) + ")"
    caps = [f"{cap_participants} participants"] if cap_participants is not None else []
    caps += [f"{cap_answers} answers"] if cap_answers is not None else []
    return (STOPPING_RULE.format(min_answers=min_answers) + f" Goal half-width: {goal_text}; cap: "
            + (" or ".join(caps) if caps else "none") + ".")


def collection_stop(
    *,
    half_width: np.ndarray,
    goal: float | np.ndarray,
    n_answers: np.ndarray,
    n_participants: int,
    cap_participants: int | None = None,
    cap_answers: int | None = None,
    min_answers: int = MIN_ANSWERS,
) -> Stop:
    """The stopping rule (``STOPPING_RULE``): stop when every condition is done (half-width ≤ goal with at least
    min_answers answers), or when the participants or the answers reach their cap (None: no cap)."""
    done = conditions_done(half_width=half_width, goal=goal, n_answers=n_answers, min_answers=min_answers)
    if done.all():
        return Stop(True, "goal", done)
    if cap_participants is not None and n_participants >= cap_participants:
        return Stop(True, "cap_participants", done)
    if cap_answers is not None and int(np.sum(n_answers)) >= cap_answers:
        return Stop(True, "cap_answers", done)
    return Stop(False, "", done)


def useful_places_left(*, block_conditions: np.ndarray, unfilled: np.ndarray, done: np.ndarray) -> bool:
    """Whether a block of a set not done has a place not yet filled (free, or held by a session under way, which may
    still time out and free it). False means no participant can help any more."""
    done = np.asarray(done, dtype=bool)
    return bool(np.any((np.asarray(unfilled) > 0) & ~done[np.asarray(block_conditions, dtype=np.int64)]))


def collection_verdict(
    *,
    half_width: np.ndarray,
    goal: float | np.ndarray,
    n_answers: np.ndarray,
    n_participants: int,
    cap_participants: int | None,
    block_conditions: np.ndarray,
    unfilled: np.ndarray,
    under_way: bool = False,
    stopped_reason: str = "",
) -> Stop:
    """The stopping rule of a running adaptive survey: collection_stop, then "no_place" when no block of a set
    above its goal has a place left; once stopped (``stopped_reason``), stopped for that reason for good (later
    estimates only add the answers of the sessions that were under way).

    The goal stops collection only with no session ``under_way``: until their answers are in, the verdict is
    "goal_pending" (not stopped; enrollment has no set to give, since every set is done), and a set their answers
    move back above the goal is open again."""
    verdict = collection_stop(half_width=half_width, goal=goal, n_answers=n_answers, n_participants=n_participants,
                              cap_participants=cap_participants)
    if verdict.reason == "goal" and under_way and not stopped_reason:
        return Stop(False, "goal_pending", verdict.done)
    if not verdict.stop and not useful_places_left(block_conditions=block_conditions, unfilled=unfilled,
                                                   done=verdict.done):
        verdict = Stop(True, "no_place", verdict.done)
    if stopped_reason:
        verdict = Stop(True, stopped_reason, verdict.done)
    return verdict


def estimate_due(*, completed: int, completed_at_estimate: int, every: int, stopped: bool, places_left: bool,
                 goal_pending: bool = False) -> bool:
    """Whether a completion (or a session's end) calls for a new estimate: ``every`` more completed sessions since
    the last one; every one once collection has stopped or waits on the sessions under way to confirm the goal
    (``goal_pending``: the final estimate must include them); and one that leaves no place in a block that helps
    (the rule then stops with "no_place")."""
    return stopped or goal_pending or completed >= completed_at_estimate + every or not places_left
