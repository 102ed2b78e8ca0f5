"""Per-answer exports: long-format rows (CSV / JSON) and a CSV in model-vs-human's raw-data layout; one row per
participant (participants.csv: answers, share correct, share per screen position, exclusion rules).

Rows are produced lazily from the arrays of results.services.survey_data_load, so a large survey streams.
Option k is the trial's option k (its canonical order), `shown_position` where the participant saw the chosen
option (0 = left; empty if not recorded); roles say which option was the target, the IRI's seed or
another foil. The iri_* columns carry the query IRI's validity record (iri_worker: its percentile in the null
distribution of distances between unrelated photos, its representation distance to its target, and whether the
network's top-1 label of the IRI equals its label of the target, with both labels); empty where there is none.
`external_id` is the survey's pseudonym of the Prolific PID or MTurk worker ID (surveys.selectors.participant_pseudonym)
unless the data was loaded with raw_ids; model-vs-human's `subj` is the participant's row id.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import numpy as np

from surveys.models import Survey

from .alignment import KIND_CATCH, KIND_MAIN, position_counts
from .selectors import iri_validity_table, stored_image_table, target_photo_names
from .services import CONDITION_FIELDS, SurveyData, survey_data_load

KIND_NAMES = {0: "main", 1: "catch", 2: "practice"}
ANSWER_COLUMNS = [
    "survey", "participant", "external_id", "trial", "trial_list", "kind", "task_type",
    "condition", "iri_set", *CONDITION_FIELDS, "target_photo", "query_image",
    "option_0", "option_1", "option_2", "option_0_role", "option_1_role", "option_2_role",
    "target_option", "choice", "shown_position", "chosen_image", "correct", "rt_ms", "included", "exclusion_rules",
    *("iri_null_percentile", "iri_rep_distance", "iri_label_match", "iri_model_label", "target_model_label"),
]
MVH_COLUMNS = ["subj", "Session", "trial", "rt", "object_response", "category", "condition", "imagename"]


def _context(data: SurveyData) -> dict:
    trials = data.trials
    image_ids = set(trials["options"][trials["options"] >= 0].tolist()) | set(trials["query"].tolist())
    return {
        "sha": stored_image_table(ids=image_ids),
        "photo": target_photo_names(ids=set(trials["target"][trials["target"] >= 0].tolist())),
        "order": np.lexsort((data.answers["trial"], data.p_row)),  # per participant, then by trial
        "validity": iri_validity_table(ids=set(trials["iri"][trials["iri"] >= 0].tolist())),
    }


def _validity_columns(record: dict) -> dict:
    def label(which: str):
        name = record.get(f"{which}_label_name")
        return name if name is not None else record.get(f"{which}_label")

    return {
        "iri_null_percentile": record.get("percentile"),
        "iri_rep_distance": record.get("distance"),
        "iri_label_match": record.get("label_match"),
        "iri_model_label": label("iri"),
        "target_model_label": label("target"),
    }


def _condition_of(data: SurveyData, row: int) -> dict:
    c = int(data.trial_condition[row])
    return data.conditions[c] if c >= 0 else {}


def _label(condition: dict) -> str:
    return " · ".join(str(condition[f]) for f in CONDITION_FIELDS if condition.get(f))


def answer_rows(*, survey: Survey, data: SurveyData | None = None) -> Iterator[dict]:
    """Every answer as one flat dict (ANSWER_COLUMNS), with the rules that exclude it."""
    data = data or survey_data_load(survey=survey)
    ctx = _context(data)
    trials, people, answers = data.trials, data.people, data.answers
    for i in ctx["order"]:
        t, p = int(data.t_row[i]), int(data.p_row[i])
        condition = _condition_of(data, t)
        options = [int(o) for o in trials["options"][t]]
        target_option = int(trials["target_option"][t])
        roles = []
        for k, option in enumerate(options):
            if option < 0:
                roles.append("")
            elif k == target_option:
                roles.append("target")
            elif option == trials["seed_image"][t]:
                roles.append("seed")
            else:
                roles.append("foil")
        choice = int(answers["choice"][i])
        rules = [rule for rule, mask in data.excluded_flags.items() if mask[i] and (rule != "rt_floor" or trials["kind"][t] == KIND_MAIN)]
        yield {
            "survey": survey.slug,
            "participant": int(people["id"][p]),
            "external_id": people["external_id"][p],
            "trial": trials["public_id"][t],
            "trial_list": int(trials["trial_list"][t]) if trials["trial_list"][t] >= 0 else None,
            "kind": KIND_NAMES.get(int(trials["kind"][t]), "main"),
            "task_type": trials["task_type"][t],
            "condition": _label(condition),
            "iri_set": condition.get("iri_sets", [None])[0] if condition else None,
            **{f: condition.get(f, "") for f in CONDITION_FIELDS},
            "target_photo": ctx["photo"].get(int(trials["target"][t]), ""),
            "query_image": ctx["sha"].get(int(trials["query"][t]), ""),
            **{f"option_{k}": ctx["sha"].get(options[k], "") for k in range(3)},
            **{f"option_{k}_role": roles[k] for k in range(3)},
            "target_option": target_option,
            "choice": choice if choice >= 0 else None,
            "shown_position": int(answers["shown_position"][i]) if answers["shown_position"][i] >= 0 else None,
            "chosen_image": ctx["sha"].get(options[choice], "") if 0 <= choice < 3 else "",
            "correct": bool(data.correct[i]),
            "rt_ms": float(answers["rt_ms"][i]) if np.isfinite(answers["rt_ms"][i]) else None,
            "included": bool(data.included[i]),
            "exclusion_rules": ";".join(rules),
            **_validity_columns(ctx["validity"].get(int(trials["iri"][t]), {})),
        }


def answers_csv(*, survey: Survey, data: SurveyData | None = None) -> Iterator[str]:
    """The long-format CSV, line by line (header first)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ANSWER_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in answer_rows(survey=survey, data=data):
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def answers_json(*, survey: Survey, data: SurveyData | None = None) -> Iterator[str]:
    """The long-format rows as one JSON array, streamed."""
    yield "["
    for n, row in enumerate(answer_rows(survey=survey, data=data)):
        yield ("," if n else "") + json.dumps(row)
    yield "]"


def mvh_csv(*, survey: Survey, data: SurveyData | None = None) -> Iterator[str]:
    """model-vs-human raw-data layout: subj, Session, trial, rt (s), object_response, category, condition, imagename.

    Included main-trial answers only. category = the target photo's name; object_response = the name of the
    chosen option (the target photo's name when the target was chosen, else "seed" or "foil-<sha12>"), so
    model-vs-human's accuracy (object_response == category) is our correctness.
    """
    data = data or survey_data_load(survey=survey)
    ctx = _context(data)
    trials, answers = data.trials, data.answers
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MVH_COLUMNS)
    previous, ordinal = -1, 0
    for i in ctx["order"]:
        if not data.included[i]:
            continue
        t, p = int(data.t_row[i]), int(data.p_row[i])
        ordinal = ordinal + 1 if p == previous else 1
        previous = p
        category = ctx["photo"].get(int(trials["target"][t]), f"target-{t}")
        choice = int(answers["choice"][i])
        if choice == trials["target_option"][t]:
            response = category
        elif 0 <= choice < 3 and trials["options"][t][choice] == trials["seed_image"][t]:
            response = "seed"
        else:
            option = int(trials["options"][t][choice]) if 0 <= choice < 3 else -1
            response = f"foil-{ctx['sha'].get(option, '')[:12]}"
        writer.writerow(
            [
                f"subject-{int(data.people['id'][p])}", 1, ordinal, round(float(answers["rt_ms"][i]) / 1000, 4),
                response, category, _label(_condition_of(data, t)), f"{ctx['sha'].get(int(trials['query'][t]), '')}.png",
            ]
        )
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def conditions_csv(*, report: dict) -> str:
    """The report's condition table as CSV (one row per condition, like the paper's tables)."""
    columns = ["condition", "name", *CONDITION_FIELDS, "alignment", "ci_low", "ci_high", "wilson_low", "wilson_high",
               "n_answers", "n_participants", "n_items", "chance", "fleiss_kappa", "fleiss_kappa_categories",
               "fleiss_kappa_items", "ceiling", "note"]
    metrics = report["proxy"]["metrics"]
    columns += [f"proxy_{m}" for m in metrics] + [f"error_consistency_{m}" for m in metrics]
    nested = {  # columns read from a nested dict of the condition
        "fleiss_kappa": lambda c: c["fleiss_kappa"]["value"],
        "fleiss_kappa_categories": lambda c: "|".join(c["fleiss_kappa"]["categories"]),  # e.g. chose_target|chose_foil
        "fleiss_kappa_items": lambda c: c["fleiss_kappa"]["items"],
        "ceiling": lambda c: (c.get("ceiling") or {}).get("ceiling"),
    }
    recognition = (report.get("recognition") or {}).get("conditions")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns + ([f"recognition_{k}" for k in RECOGNITION_COLUMNS] if recognition else []))
    for i, c in enumerate(report["conditions"]):
        proxy = c.get("proxy", {})
        values = [nested[k](c) if k in nested else c.get(k) for k in columns[: -2 * len(metrics) or None]]
        values += [proxy.get(m, {}).get("alignment") for m in metrics]
        values += [proxy.get(m, {}).get("error_consistency", {}).get("kappa") for m in metrics]
        values += [recognition[i].get(k) for k in RECOGNITION_COLUMNS] if recognition else []
        writer.writerow(["" if v is None else v for v in values])
    return buffer.getvalue()


# A classification survey's conditions.csv adds these (results.recognition), prefixed "recognition_".
RECOGNITION_COLUMNS = ["accuracy", "ci_low", "ci_high", "chance", "network_accuracy", "accuracy_difference",
                       "observed_consistency", "error_consistency", "n_answers"]


PARTICIPANT_COLUMNS = [
    "survey", "participant", "external_id", "status", "completed", "main_answers", "included_answers", "correct_share",
    "positioned_answers", "position_0_share", "position_1_share", "position_2_share", "largest_share", "one_sided",
    "exclusion_rules",
]


def participant_rows(*, survey: Survey, data: SurveyData | None = None) -> Iterator[dict]:
    """One row per participant: answers, share correct (main trials), where they clicked (share of main and catch
    answers per screen position, 0 = left, over answers with a recorded position) and the rules that exclude them."""
    data = data or survey_data_load(survey=survey)
    people, kind = data.people, data.trials["kind"][data.t_row]
    n_people, k = people["id"].size, data.n_positions
    main = kind == KIND_MAIN
    counted = main | (kind == KIND_CATCH)
    sides = position_counts(data.p_row[counted], data.answers["shown_position"][counted], n_people, k)
    n_main = np.bincount(data.p_row[main], minlength=n_people)
    n_right = np.bincount(data.p_row[main], weights=data.correct[main], minlength=n_people)
    n_in = np.bincount(data.p_row[data.included], minlength=n_people)
    flagged = data.participant_rules.get("one_sided")  # absent while the rule is off
    too_fast = np.bincount(data.p_row[main & data.excluded_flags["rt_floor"]], minlength=n_people) > 0
    for p in range(n_people):
        n_pos = int(sides[p].sum())
        shares = [float(sides[p, j] / n_pos) if n_pos and j < k else None for j in range(3)]
        excluded_by = [rule for rule, mask in data.participant_rules.items() if mask[p]] + ["rt_floor"] * bool(too_fast[p])
        yield {
            "survey": survey.slug,
            "participant": int(people["id"][p]),
            "external_id": people["external_id"][p],
            "status": people["status"][p],
            "completed": bool(people["completed"][p]),
            "main_answers": int(n_main[p]),
            "included_answers": int(n_in[p]),
            "correct_share": float(n_right[p] / n_main[p]) if n_main[p] else None,
            "positioned_answers": n_pos,
            **{f"position_{j}_share": shares[j] for j in range(3)},
            "largest_share": max(v for v in shares if v is not None) if n_pos else None,
            "one_sided": bool(flagged[p]) if flagged is not None else None,
            "exclusion_rules": ";".join(excluded_by),
        }


def participants_csv(*, survey: Survey, data: SurveyData | None = None) -> Iterator[str]:
    """participant_rows as CSV (header first)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PARTICIPANT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in participant_rows(survey=survey, data=data):
        writer.writerow({key: ("" if v is None else v) for key, v in row.items()})
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# Every streamed export by file name: its content type and the function that writes it.
EXPORTS = {
    "answers.csv": ("text/csv", answers_csv),
    "answers.json": ("application/json", answers_json),
    "model-vs-human.csv": ("text/csv", mvh_csv),
    "participants.csv": ("text/csv", participants_csv),
}
RAW_ID_EXPORTS = ["answers.csv", "answers.json", "participants.csv"]  # the ones with an external_id column


def export_stream(*, survey: Survey, name: str, raw_ids: bool = False) -> tuple[str, Iterator[str]]:
    """(content type, chunks) of one export by name (a key of EXPORTS); external IDs pseudonymised unless raw_ids."""
    content_type, write = EXPORTS[name]
    return content_type, write(survey=survey, data=survey_data_load(survey=survey, raw_ids=raw_ids))
