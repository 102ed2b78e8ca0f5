"""Surveys, their trials and trial lists, participants, reservations (slots), answers and quality events.

The data model in one paragraph: a **Survey** is built from finished IRI sets. Its main trials are split
into **TrialLists** (a list = the set of trials one participant does; conditions are spread round robin so
every list mixes them). Each list has N **Slots** per mode (live and pilot): a participant claims one slot
(`SELECT … FOR UPDATE SKIP LOCKED`, lowest `rank` first, so lists fill breadth-first and their counts never
differ by more than one), holds it until `reserved_until`, and fills it on completion. A list therefore ends
with exactly N filled slots, never N + 1. Every **Trial** has `kind` (main / catch / practice), `task_type`
(2afc / cluster), ordered options (`option_0`, `option_1`, `option_2`; `n_options` of them) and
`target_option`, the index of the correct option; only the server knows it. **Assignment** rows give a
participant's trials in their order; **Response** is one answer per (participant, trial), `choice` = the
chosen option's index, saved exactly once under its idempotency key.

Contract for `results/selectors.py` (keep these names): Trial.kind / task_type / target_option / n_options /
options; Participant.is_pilot / is_bot / excluded / exclusion_reasons / status; Response.choice / rt_ms.
"Correct" = choice == trial.target_option; chance = 1 / n_options. Pilot participants (is_pilot) and bots
(is_bot) are never live data. A rehearsal's bots (is_rehearsal: `run_bots --as-people`) are live data on
purpose, counted like people, until surveys.services.survey_rehearsal_erase deletes them.

The models live by part: defaults (texts, codes), survey, trials (and trial lists), sessions (participants, slots,
assignments), answers (responses, events) and prolific; every name is imported here, so ``surveys.models`` stays
the one place to import them from.
"""
# The migrations name the generated defaults as surveys.models._token, ._completion_code and ._pseudonym_salt.
from .answers import ParticipantEvent, Response
from .defaults import (
    DEFAULT_CLASSIFY_CONSENT,
    DEFAULT_CLASSIFY_INSTRUCTIONS,
    DEFAULT_CLUSTER_CONSENT,
    DEFAULT_CLUSTER_INSTRUCTIONS,
    DEFAULT_CONSENT,
    DEFAULT_INSTRUCTIONS,
    DEFAULT_TEXTS,
    DURATION_RANGE,
    MAX_DURATION_MS,
    TASK_DEFAULT_HELP,
    _completion_code,
    _pseudonym_salt,
    _token,
)
from .prolific import ProlificStudy
from .sessions import Assignment, Participant, Slot
from .survey import Survey
from .trials import Trial, TrialList

__all__ = [
    "DEFAULT_CLASSIFY_CONSENT",
    "DEFAULT_CLASSIFY_INSTRUCTIONS",
    "DEFAULT_CLUSTER_CONSENT",
    "DEFAULT_CLUSTER_INSTRUCTIONS",
    "DEFAULT_CONSENT",
    "DEFAULT_INSTRUCTIONS",
    "DEFAULT_TEXTS",
    "DURATION_RANGE",
    "MAX_DURATION_MS",
    "TASK_DEFAULT_HELP",
    "Assignment",
    "Participant",
    "ParticipantEvent",
    "ProlificStudy",
    "Response",
    "Slot",
    "Survey",
    "Trial",
    "TrialList",
    "_completion_code",
    "_pseudonym_salt",
    "_token",
]
