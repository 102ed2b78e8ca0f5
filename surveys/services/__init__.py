"""Writes for surveys, one module per concern: design (build trials and trial lists from finished IRI sets,
publish, pilot reset), adaptive (collection to a precision goal), enrollment (sessions in reserved slots), session (consent, heartbeat, events, ending
with an outcome and exclusion flags), answers (the answer hot path), data_rights (erase a participant,
drop external IDs after a survey's retention period) and rehearsal (bots the estimates count like people, erased
in one action). The names other modules use are re-exported here."""
from .adaptive import adaptive_estimate, adaptive_state_initial, survey_adaptive_refresh
from .answers import UNKNOWN_SESSION, response_record
from .data_rights import external_id_hash, participant_erase, participant_ids_expire
from .design import (
    build_summary,
    survey_check,
    survey_create,
    survey_create_start,
    survey_pilot_reset,
    survey_publish,
    survey_slug_check,
)
from .enrollment import (
    SURVEY_NOT_LIVE,
    enroll_is_mturk_preview,
    models_q_free,
    participant_enroll,
    reservations_release_expired,
    slot_claim,
)
from .rehearsal import (
    survey_rehearsal_check,
    survey_rehearsal_erase,
    survey_rehearsal_start,
)
from .session import (
    HEARTBEAT_HOLD_S,
    participant_complete,
    participant_consent,
    participant_events_record,
    participant_heartbeat,
    participant_leave,
)

__all__ = [
    "HEARTBEAT_HOLD_S",
    "SURVEY_NOT_LIVE",
    "UNKNOWN_SESSION",
    "adaptive_estimate",
    "adaptive_state_initial",
    "build_summary",
    "enroll_is_mturk_preview",
    "external_id_hash",
    "models_q_free",
    "participant_complete",
    "participant_consent",
    "participant_enroll",
    "participant_erase",
    "participant_events_record",
    "participant_heartbeat",
    "participant_ids_expire",
    "participant_leave",
    "reservations_release_expired",
    "response_record",
    "slot_claim",
    "survey_check",
    "survey_create",
    "survey_create_start",
    "survey_pilot_reset",
    "survey_publish",
    "survey_rehearsal_check",
    "survey_rehearsal_erase",
    "survey_rehearsal_start",
    "survey_slug_check",
    "survey_adaptive_refresh",
]
