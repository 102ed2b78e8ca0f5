"""What each column of a study archive's tables means: its description, Frictionless type and unit, for the
archive's datapackage.json (results.archive). The answers table is the platform's answers export
(results.export_answers.ANSWER_COLUMNS); its columns are described here."""
from __future__ import annotations

from .selectors import CONDITION_FIELDS

# Column meaning, Frictionless type and unit ("" = none) of each table.
_TIMING = {
    "image_onset_ms": ("When the image was first painted, from requestAnimationFrame", "number", "ms since page load"),
    "image_offset_ms": ("When the image was last painted", "number", "ms since page load"),
    "shown_ms": ("How long the image was up (offset - onset)", "number", "ms"),
    "frames": ("How many frames the image was up", "number", "frames"),
    "refresh_hz": ("The refresh rate the frames were counted at", "number", "Hz"),
}
_DEVICE = {
    "device_window_w": ("Browser window width at enrollment", "number", "CSS px"),
    "device_window_h": ("Browser window height at enrollment", "number", "CSS px"),
    "device_screen_w": ("Screen width", "number", "CSS px"),
    "device_screen_h": ("Screen height", "number", "CSS px"),
    "device_dpr": ("Device pixel ratio", "number", "device px per CSS px"),
    "device_touch": ("Whether the device has a touch screen", "any", ""),
    "device_user_agent": ("The browser's user agent string", "string", ""),
    "device_refresh_hz": ("The refresh rate the browser measured", "number", "Hz"),
}
COLUMNS: dict[str, dict[str, tuple[str, str, str]]] = {
    "answers": {
        "survey": ("The survey's slug", "string", ""),
        "participant": ("The participant's id (sessions.participant_id)", "integer", ""),
        "external_id": ("The survey's pseudonym of the Prolific PID or MTurk worker ID (raw ID if identified)",
                        "string", ""),
        "trial": ("The trial's public id (trials.public_id)", "string", ""),
        "trial_list": ("The trial list (counterbalancing list) the trial belongs to", "integer", ""),
        "kind": ("Trial kind: practice, screening, catch or main", "string", ""),
        "task_type": ("Task: 2afc, cluster or classify", "string", ""),
        "condition": ("The condition's label (backbone · checkpoint · training · recipe · seed kind · layer)",
                      "string", ""),
        "iri_set": ("The first IRI set (IriJob id) of the condition", "integer", ""),
        "backbone": ("The network the IRI was made from", "string", ""),
        "checkpoint": ("The first 12 hex digits of the checkpoint's SHA-256", "string", ""),
        "training": ("The checkpoint's training label", "string", ""),
        "recipe": ("The inversion recipe (regulariser terms, parametrisation, transforms)", "string", ""),
        "seed_kind": ("What the inversion started from (noise kind or photo)", "string", ""),
        "layer": ("The layer whose representation the IRI matches", "string", ""),
        "target_photo": ("Name of the target photo the IRI was made from", "string", ""),
        "query_image": ("SHA-256 of the query image (stimuli/images/SHA.png)", "string", ""),
        "option_0": ("SHA-256 of option 0's image (empty for classification)", "string", ""),
        "option_1": ("SHA-256 of option 1's image", "string", ""),
        "option_2": ("SHA-256 of option 2's image (clustering)", "string", ""),
        "option_0_role": ("Role of option 0: target, seed or foil", "string", ""),
        "option_1_role": ("Role of option 1: target, seed or foil", "string", ""),
        "option_2_role": ("Role of option 2: target, seed or foil", "string", ""),
        "target_option": ("Index of the right option (or category)", "integer", ""),
        "choice": ("Index of the chosen option (or category); -1 none", "integer", ""),
        "shown_position": ("Screen position of the chosen option, 0 = left; empty if not recorded", "integer", ""),
        "chosen_image": ("SHA-256 of the chosen option's image", "string", ""),
        "category": ("Classification: the true category", "string", ""),
        "chosen_category": ("Classification: the chosen category", "string", ""),
        "correct": ("The answer chose the target (the right reference, the true category)", "boolean", ""),
        "rt_ms": ("Response time from the first painted frame of the images", "number", "ms"),
        **_TIMING,
        "mistimed": ("The browser showed the image more than one frame off its duration", "boolean", ""),
        "included": ("The answer counts in the report (a main answer no exclusion rule removed)", "boolean", ""),
        "exclusion_rules": ("The exclusion rules that remove this answer, separated by ;", "string", ""),
        "iri_null_percentile": ("The IRI's percentile in the null distribution of unrelated photos", "number",
                                "percent"),
        "iri_rep_distance": ("Representation distance between the IRI and its target", "number", "model units"),
        "iri_label_match": ("The network's top-1 label of the IRI equals its label of the target", "boolean", ""),
        "iri_model_label": ("The network's top-1 label of the IRI", "string", ""),
        "target_model_label": ("The network's top-1 label of the target photo", "string", ""),
        **_DEVICE,
    },
    "trials": {
        "trial_id": ("The trial's id (answers are linked by public_id)", "integer", ""),
        "public_id": ("The trial's public id (answers.trial)", "string", ""),
        "trial_list": ("The trial list (counterbalancing list); empty for shared trials", "integer", ""),
        "kind": ("Trial kind: practice, screening, catch or main", "string", ""),
        "task_type": ("Task: 2afc, cluster or classify", "string", ""),
        "n_options": ("Number of options (categories for classification)", "integer", "options"),
        "target_option": ("Index of the right option (or category)", "integer", ""),
        "condition": ("Row of the conditions table (conditions.condition); empty: no IRI", "integer", ""),
        "iri_set": ("The IRI set (IriJob id) of the query IRI", "integer", ""),
        "iri_id": ("The query IRI's id (stimuli/iris.json)", "integer", ""),
        "target_photo_id": ("The target photo's id: the unit the bootstrap resamples", "integer", ""),
        "target_photo": ("The target photo's name", "string", ""),
        "category": ("Classification: the true category", "string", ""),
        "query_image": ("SHA-256 of the query image (stimuli/images/SHA.png)", "string", ""),
        "option_0": ("SHA-256 of option 0's image", "string", ""),
        "option_1": ("SHA-256 of option 1's image", "string", ""),
        "option_2": ("SHA-256 of option 2's image", "string", ""),
        "mask": ("SHA-256 of the noise mask shown after the image (classification)", "string", ""),
        "foil_kind": ("How the foil was chosen", "string", ""),
        "screen": ("Clustering: the screen this row is on", "string", ""),
        "iri_label_match": ("The IRI's validity record: the network recognises it as its target", "boolean", ""),
    },
    "sessions": {
        "participant_id": ("The participant's id (answers.participant)", "integer", ""),
        "external_id": ("Pseudonym of the Prolific PID or MTurk worker ID (raw ID if identified)", "string", ""),
        "trial_list": ("The trial list the participant was given", "integer", ""),
        "status": ("Session status at export", "string", ""),
        "completed": ("The session completed", "boolean", ""),
        "pilot": ("A pilot session", "boolean", ""),
        "bot": ("A bot session", "boolean", ""),
        "flagged": ("Flagged for exclusion by the survey", "boolean", ""),
        "exclusion_reasons": ("Why the survey flagged the session, separated by ;", "string", ""),
    },
    "conditions": {
        "condition": ("Row index of the condition (trials.condition)", "integer", ""),
        "label": ("The condition's label in the report", "string", ""),
        "name": ("The IRI sets' names, joined by +", "string", ""),
        **{f: (f"The condition's {f.replace('_', ' ')}", "string", "") for f in CONDITION_FIELDS},
        "iri_sets": ("The IRI sets (IriJob ids) the condition pools, separated by ;", "string", ""),
    },
    "assignments": {
        "participant_id": ("The participant (sessions.participant_id)", "integer", ""),
        "trial_id": ("The trial (trials.trial_id)", "integer", ""),
        "position": ("Place of the trial in the participant's sequence, practice first", "integer", "trials"),
        "option_order": ("The option indices in screen order, left to right (counterbalancing)", "string", ""),
    },
}
UNDESCRIBED = "(not described)"  # a column the exports gained after this table was written; the tests look for it


def column_schema(name: str, table: str) -> dict:
    description, kind, unit = COLUMNS[table].get(name, (UNDESCRIBED, "any", ""))
    field = {"name": name, "type": kind, "description": description}
    if unit:
        field["unit"] = unit
    return field
