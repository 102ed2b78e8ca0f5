"""What the planner and the forecast plan from: the Prolific pay rates, the sessions' times, and per IRI set the
answers, alignment, design effect and correlations of the pilot or of the live sessions (the package docstring,
surveys.planning, says where each figure comes from)."""
from __future__ import annotations

import math
import statistics

import numpy as np
from django.conf import settings
from django.db.models import Count

from stats.adaptive.interval import cluster_correlations
from stats.adaptive.planner import PROLIFIC_RATES
from stats.adaptive.stopping import MIN_ANSWERS
from surveys.counted_answers import Purpose, answers_counted, sessions_counted
from surveys.models import Survey, Trial, TrialList

DEFAULT_SECONDS_PER_TRIAL = 5.0
DEFAULT_SECONDS_PER_PARTICIPANT = 120.0
# Sessions under way at once while adaptive collection runs (their answers arrive after the estimate that stops
# it); what bench/adaptive.py simulates. The plan says it assumed this.
DEFAULT_SESSIONS_IN_FLIGHT = 8


def prolific_pay_rates() -> dict:
    """The Prolific workspace's currency (PROLIFIC_CURRENCY) with its symbol and its minimum and recommended hourly
    pay (stats.adaptive.PROLIFIC_RATES): what the planner, the forecast and the draft form use."""
    return {"currency": settings.PROLIFIC_CURRENCY, **PROLIFIC_RATES[settings.PROLIFIC_CURRENCY]}


def sessions_times(*, survey: Survey, purpose: Purpose) -> dict:
    """Session times and trial spacing of the completed sessions of ``purpose`` (PILOT_TIME or LIVE_TIME; see the
    module docstring)."""
    sessions = sessions_counted(survey=survey, purpose=purpose)
    done = list(sessions.filter(completed_at__isnull=False).values_list("pk", "created_at", "completed_at"))
    if not done:
        return {"sessions": 0, "session_seconds": None, "seconds_per_trial": None, "seconds_per_participant": None,
                "seconds_per_trial_method": ""}
    answers: dict[int, list] = {pk: [] for pk, *_ in done}
    main: dict[int, int] = dict.fromkeys(answers, 0)
    rts = []
    rows = (answers_counted(survey=survey, purpose=purpose, session_ids=list(answers))
            .values_list("participant_id", "created_at", "trial__kind", "rt_ms"))
    for pk, at, kind, rt_ms in rows:
        answers[pk].append(at)
        if kind == Trial.Kind.MAIN:
            main[pk] += 1
            rts.append(rt_ms)
    spacings = [(max(ts) - min(ts)).total_seconds() / (len(ts) - 1) for ts in answers.values() if len(ts) >= 2]
    if spacings:
        per_trial, method = statistics.median(spacings), "spacing of trial answers"
    elif rts:
        per_trial, method = statistics.median(rts) / 1000, "response times"
    else:
        per_trial, method = None, ""
    seconds = {pk: (completed - created).total_seconds() for pk, created, completed in done}
    fixed = None
    if per_trial is not None:
        fixed = max(0.0, statistics.median(seconds[pk] - main[pk] * per_trial for pk in seconds))
    return {"sessions": len(done), "session_seconds": statistics.median(seconds.values()),
            "seconds_per_trial": per_trial, "seconds_per_participant": fixed, "seconds_per_trial_method": method}


def _conditions(survey: Survey) -> list[dict]:
    """The survey's IRI sets in condition order (as in adaptive_state) with their main trials."""
    trials = dict(Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN).values("iri__job_id")
                  .annotate(n=Count("id")).values_list("iri__job_id", "n"))
    jobs = survey.iri_jobs.order_by("pk").values_list("pk", "name")
    return [{"id": pk, "name": name or f"IRI set {pk}", "trials": trials.get(pk, 0)} for pk, name in jobs]


def _answers_figures(*, survey: Survey, purpose: Purpose, conditions: list[dict]) -> dict:
    """Per IRI set, the main answers that count for ``purpose`` (PILOT or ESTIMATE): answers, alignment, design
    effect, and its participant and item intra-class correlations (stats.adaptive.cluster_correlations); and the
    answer-weighted mean design effect and correlations over the sets with at least MIN_ANSWERS answers (the
    fallback of a set with fewer)."""
    index = {c["id"]: i for i, c in enumerate(conditions)}
    rows = list(answers_counted(survey=survey, purpose=purpose)
                .values_list("participant_id", "trial__iri_id", "trial__iri__job_id", "choice", "trial__target_option"))
    rows = [r for r in rows if r[2] in index]
    arrays = np.array([(p, i, index[j], c == t) for p, i, j, c, t in rows], dtype=np.int64).reshape(-1, 4)
    parts = cluster_correlations(correct=arrays[:, 3], participants=arrays[:, 0], items=arrays[:, 1],
                                 conditions=arrays[:, 2], n_conditions=len(conditions))
    alignment = np.bincount(arrays[:, 2], weights=arrays[:, 3], minlength=len(conditions))
    enough = [c for c in parts if c.n_answers >= MIN_ANSWERS]

    def pooled(name: str) -> float | None:
        known = [(getattr(c, name), c.n_answers) for c in enough if getattr(c, name) is not None]
        return sum(v * n for v, n in known) / sum(n for _, n in known) if known else None

    design_effect = pooled("design_effect")
    return {
        "conditions": [{"answers": c.n_answers, "alignment": float(alignment[i] / c.n_answers) if c.n_answers else None,
                        "design_effect": round(c.design_effect, 4),
                        "answers_per_participant": round(c.answers_per_participant, 3),
                        "icc_participant": None if c.participant is None else round(c.participant, 4),
                        "icc_item": None if c.item is None else round(c.item, 4)}
                       for i, c in enumerate(parts)],
        "design_effect": round(design_effect, 4) if design_effect is not None else 1.0,
        "design_effect_sets": len(enough),
        "icc_participant": pooled("participant"),
        "icc_item": pooled("item"),
    }


def survey_pilot_figures(*, survey: Survey) -> dict:
    """What the survey's pilot says (module docstring): its completed sessions' median session time, seconds per
    trial and fixed seconds per participant; per IRI set its answers, alignment, design effect and intra-class
    correlations; the mean design effect."""
    conditions = _conditions(survey)
    answers = _answers_figures(survey=survey, purpose=Purpose.PILOT, conditions=conditions)
    return {
        **sessions_times(survey=survey, purpose=Purpose.PILOT_TIME),
        **answers,
        "conditions": [{**c, **a} for c, a in zip(conditions, answers["conditions"])],
    }


def survey_answer_figures(*, survey: Survey) -> dict:
    """The answers the planner and the forecast plan from, with their source: the completed live sessions once there
    are any (what collection has really delivered), else the pilot's sessions, else none (``source`` "default").
    Per IRI set: answers, alignment, design effect, intra-class correlations (see _answers_figures)."""
    conditions = _conditions(survey)
    count = sessions_counted(survey=survey, purpose=Purpose.ESTIMATE).count()
    if count:
        figures, source = _answers_figures(survey=survey, purpose=Purpose.ESTIMATE, conditions=conditions), "live"
    else:
        count = sessions_counted(survey=survey, purpose=Purpose.PILOT).count()
        figures, source = _answers_figures(survey=survey, purpose=Purpose.PILOT, conditions=conditions), "pilot"
        if not any(c["answers"] for c in figures["conditions"]):
            source = "default"
    return {**figures, "source": source, "sessions": count,
            "conditions": [{**c, **a} for c, a in zip(conditions, figures["conditions"])]}


def set_correlations(figures: dict) -> tuple[list[float], list[float], list[str]]:
    """Per set: ρ_P and ρ_I, with their source. A set with MIN_ANSWERS answers and its own estimate keeps it; the
    others take the answer-weighted mean of those sets, else 0 (answers as if independent, the default)."""
    rho_p, rho_i, sources = [], [], []
    for c in figures["conditions"]:
        own = c["answers"] >= MIN_ANSWERS
        p_own, i_own = c["icc_participant"] if own else None, c["icc_item"] if own else None
        rho_p.append(p_own if p_own is not None else (figures["icc_participant"] or 0.0))
        rho_i.append(i_own if i_own is not None else (figures["icc_item"] or 0.0))
        if figures["source"] == "default" or (p_own is None and i_own is None and figures["icc_participant"] is None
                                              and figures["icc_item"] is None):
            sources.append("default")
        elif p_own is not None or i_own is not None:
            sources.append(figures["source"])
        else:
            sources.append(f"{figures['source']}, pooled over sets")
    return rho_p, rho_i, sources




def survey_lists(survey: Survey) -> tuple[int, int]:
    """(trial lists of the fixed design, main trials a participant does, at least 1). A fixed survey: its lists,
    and their mean main trials. An adaptive survey's lists are blocks, several per participant
    (``blocks_per_participant`` of its state): a participant does that many blocks' trials, and the fixed design
    it is compared with would cut its trials into lists of that many."""
    lists = TrialList.objects.filter(survey=survey).count() or 1
    main = Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN).count()
    state = survey.adaptive if survey.precision_goal is not None else None
    if state is not None:
        blocks = state.blocks_per_participant
        per_participant = max(1, min(main, round(blocks * main / lists)))
        return max(1, math.ceil(main / per_participant)), per_participant
    return lists, max(1, round(main / lists))
