"""The budget planner and the live forecast of adaptive collection: the survey-side of stats.adaptive's
plan_budget and condition_answers_needed (which stay pure numpy).

Where the planner's figures come from
-------------------------------------
A pilot is the survey's pilot sessions (``is_pilot``); bot sessions are left out (they answer by a policy, at
machine speed). Which sessions and answers count for each figure is surveys.counted_answers' rule (Purpose.PILOT,
PILOT_TIME, LIVE_TIME, ESTIMATE).

- **Session time** = completed_at − created_at of each completed pilot session: from the participant's arrival
  (when the platform's clock starts) to completion, the time a participant is paid for.
- **Seconds per trial** = the median over completed pilot sessions of the spacing of their trial answers:
  (last − first answer's server time) ÷ (answers − 1), main and catch answers (not practice or screening). That
  is the whole trial cycle (images loading, the decision, the next screen), which the response time alone
  (``rt_ms``, from the first painted frame to the click) leaves out although it is paid. A session's spacing is
  its mean, so a break moves that session only, and the median over sessions resists it. Without a session of two
  answers: the median main-trial response time.
- **Seconds per participant** (the fixed part: consent, instructions, practice and catch trials) = the median over
  completed pilot sessions of session time − main answers × seconds per trial, at least 0. When every session did
  the survey's trials, a participant's planned time is then the pilot's median session time.
- **p per IRI set** = the share of the main answers that chose the target; 0.5, the widest interval, for a set
  without answers. Once live sessions have completed, the answers are theirs (what collection really delivers:
  completed, not pilots, bots or excluded, as the estimates count them); before that, the pilot's (all pilot
  sessions, finished or not). ``assumptions.answers`` and each set's ``p_source`` say which.
- **Design effects per set and per design.** A design effect measured under one design does not carry over to
  another: it grows with the trials of a set one participant answers (m) and with the ratings of one item (r),
  deff = 1 + ρ_P (m − 1) + ρ_I (r − 1). From the same answers, stats.adaptive.cluster_correlations splits each
  set's design effect into its participant and item correlations ρ_P and ρ_I; a set with fewer than MIN_ANSWERS
  answers (or whose answers all agree) takes the answer-weighted mean of the others, else 0 (``icc_source``).
  plan_budget then plans each design at its own m and r: fixed N at m ≈ trials per participant ÷ sets and r = N,
  adaptive collection replayed block by block (m from 2 up to all of a participant's trials once one set is left).
  ``assumptions.design_effect`` is the mean design effect measured (1 without one), for reference.

What is entered wins over the pilot, and the pilot over the defaults (``DEFAULT_SECONDS_PER_TRIAL`` and
``DEFAULT_SECONDS_PER_PARTICIPANT``, with a warning); the plan says which source each assumption came from.

The plan's trial lists: a participant does the survey's main trials per list (their mean over its lists; an
adaptive survey's lists are blocks, and a participant does ``blocks_per_participant`` of them); fixed N adds
participants in whole rounds of one per list, so every list keeps the same N. Adaptive collection is planned with
DEFAULT_SESSIONS_IN_FLIGHT sessions under way and the survey's re-estimation cadence (``precision_every``).

The forecast (``survey_forecast``) reads the adaptive state enrollment keeps (surveys.services.adaptive): per IRI
set the answers still needed at its current alignment and design effect, and the participants and cost they
take; it says when the cap or the lists' free places cannot hold them.

The package: figures.py reads the sessions and answers (what both plan from), plan.py is the planner
(``survey_plan``), forecast.py the live forecast (``survey_forecast``).
"""
from .figures import (
    DEFAULT_SECONDS_PER_PARTICIPANT,
    DEFAULT_SECONDS_PER_TRIAL,
    DEFAULT_SESSIONS_IN_FLIGHT,
    prolific_pay_rates,
    survey_answer_figures,
    survey_pilot_figures,
)
from .forecast import survey_forecast, survey_seconds_per_participant
from .plan import survey_plan

__all__ = [
    "DEFAULT_SECONDS_PER_PARTICIPANT", "DEFAULT_SECONDS_PER_TRIAL", "DEFAULT_SESSIONS_IN_FLIGHT",
    "prolific_pay_rates", "survey_answer_figures", "survey_forecast", "survey_pilot_figures", "survey_plan",
    "survey_seconds_per_participant",
]
