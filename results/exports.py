"""Per-answer exports: long-format rows (CSV / JSON) and a CSV in model-vs-human's raw-data layout; one row per
participant (participants.csv: answers, share correct, share per screen position, exclusion rules).

Rows are produced lazily from the arrays of results.survey_data.survey_data_load, so a large survey streams.
Option k is the trial's option k (its canonical order), `shown_position` where the participant saw the chosen
option (0 = left; empty if not recorded); roles say which option was the target, the IRI's seed or
another foil. The iri_* columns carry the query IRI's validity record (iri_worker: its percentile in the null
distribution of distances between unrelated photos, its representation distance to its target, and whether the
network's top-1 label of the IRI equals its label of the target, with both labels); empty where there is none.
`external_id` is the survey's pseudonym of the Prolific PID or MTurk worker ID (surveys.selectors.participant_pseudonym)
unless the data was loaded with raw_ids; model-vs-human's `subj` is the participant's row id.

Each answer row also carries what the study measured: its trial kind (practice, screening, catch, main), a
classification's true and chosen category, the browser's timing of the image (TIMING_COLUMNS, as the participant
API stores them) and the mistimed flag, and the session's device facts (DEVICE_COLUMNS: Participant.client_info,
what the browser reported and the refresh rate it measured). They are read on the export path only, streamed in the
answers' order, so the report's answer query does not grow.
"""
from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections.abc import Iterator

import numpy as np

from iri_worker.validity_record import ValidityRecord
from stats.exclusions import KIND_CATCH, KIND_MAIN, position_counts
from surveys.counted_answers import ANSWER_TIMING_FIELDS, survey_answer_timing_rows
from surveys.models import Survey
from surveys.task_types import task_type_get

from .selectors import (
    CONDITION_FIELDS,
    KIND_CODES,
    iri_validity_table,
    stored_image_table,
    survey_device_table,
    target_photo_names,
)
from .survey_data import SurveyData, survey_data_load

KIND_NAMES = {code: name for name, code in KIND_CODES.items()}  # main, catch, practice, screening
# What the browser measured per answer (surveys.answer_api.TIMING_FIELDS): image onset and offset (ms since the page's
# time origin, from requestAnimationFrame), how long it was up, in frames, and the refresh rate frames were counted at.
TIMING_COLUMNS = list(ANSWER_TIMING_FIELDS)
# The session's device facts (surveys.apis.ClientInfoSerializer, stored in Participant.client_info), prefixed device_.
DEVICE_FACTS = ["window_w", "window_h", "screen_w", "screen_h", "dpr", "touch", "user_agent", "refresh_hz"]
DEVICE_COLUMNS = [f"device_{fact}" for fact in DEVICE_FACTS]
ANSWER_COLUMNS = [
    "survey", "participant", "external_id", "trial", "trial_list", "kind", "task_type",
    "condition", "iri_set", *CONDITION_FIELDS, "target_photo", "query_image",
    "option_0", "option_1", "option_2", "option_0_role", "option_1_role", "option_2_role",
    "target_option", "choice", "shown_position", "chosen_image", "category", "chosen_category", "correct", "rt_ms",
    *TIMING_COLUMNS, "mistimed", "included", "exclusion_rules",
    *("iri_null_percentile", "iri_rep_distance", "iri_label_match", "iri_model_label", "target_model_label"),
    *DEVICE_COLUMNS,
]
# model-vs-human's raw human data (raw-data/<experiment>/*.csv in bethgelab/model-vs-human; read back by
# modelvshuman/helper/plotting_helper.py, which lower-cases the header): one row per trial.
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


NO_RECORD = ValidityRecord()  # the validity columns of a trial without an IRI (catch, practice)


def _validity_columns(record: ValidityRecord) -> dict:
    return {
        "iri_null_percentile": record.percentile,
        "iri_rep_distance": record.distance,
        "iri_label_match": record.label_match,
        "iri_model_label": record.iri_label_shown,
        "target_model_label": record.target_label_shown,
    }


def _condition_of(data: SurveyData, row: int) -> dict:
    c = int(data.trial_condition[row])
    return data.conditions[c] if c >= 0 else {}


def _label(condition: dict) -> str:
    return " · ".join(str(condition[f]) for f in CONDITION_FIELDS if condition.get(f))


class _TimingJoin:
    """The timing and mistimed flag of answers asked for in participant-then-trial order (the exports' order),
    walking survey_answer_timing_rows alongside: one pass, nothing held but the current row."""

    NONE = dict.fromkeys(ANSWER_TIMING_FIELDS)

    def __init__(self, *, survey: Survey):
        self.rows = survey_answer_timing_rows(survey=survey)
        self.row = next(self.rows, None)

    def at(self, *, participant: int, trial: int) -> tuple[dict, bool]:
        row = self.row
        while row is not None and (row[0] < participant or (row[0] == participant and row[1] < trial)):
            row = self.row = next(self.rows, None)
        if row is None or row[0] != participant or row[1] != trial:
            return self.NONE, False
        timing = dict(zip(ANSWER_TIMING_FIELDS, row[2:-1]))
        if timing["frames"] is not None and timing["frames"].is_integer():
            timing["frames"] = int(timing["frames"])  # a whole count (the participant API stores it as a float)
        return timing, bool(row[-1])


def _categories(*, survey: Survey, task_type: str, target_option: int, choice: int) -> tuple[str, str]:
    """An answer's true and chosen category, as its task type names them (classification: the survey's categories;
    empty where the options are images)."""
    return task_type_get(task_type).export_categories(survey=survey, target_option=target_option, choice=choice)


def _trial_columns(*, data: SurveyData, ctx: dict, t: int) -> tuple[dict, dict, list[int]]:
    """One trial's columns, the same for each answer: (those before choice, the IRI's validity columns, option ids)."""
    trials = data.trials
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
    head = {
        "trial": trials["public_id"][t],
        "trial_list": int(trials["trial_list"][t]) if trials["trial_list"][t] >= 0 else None,
        "kind": KIND_NAMES[int(trials["kind"][t])],
        "task_type": trials["task_type"][t],
        "condition": _label(condition),
        "iri_set": condition.get("iri_sets", [None])[0] if condition else None,
        **{f: condition.get(f, "") for f in CONDITION_FIELDS},
        "target_photo": ctx["photo"].get(int(trials["target"][t]), ""),
        "query_image": ctx["sha"].get(int(trials["query"][t]), ""),
        **{f"option_{k}": ctx["sha"].get(options[k], "") for k in range(3)},
        **{f"option_{k}_role": roles[k] for k in range(3)},
        "target_option": target_option,
    }
    return head, _validity_columns(ctx["validity"].get(int(trials["iri"][t]), NO_RECORD)), options


def _answers(*, survey: Survey, data: SurveyData, ctx: dict) -> Iterator[tuple]:
    """Each answer's own values in the exports' order (per participant, then trial): (trial row, participant row,
    choice, shown_position, rt_ms, correct, included, the rule flags that hit it, main, timing, mistimed).

    The per-answer arrays are read a block at a time as Python lists (indexing numpy arrays one element at a time
    costs more than the rest)."""
    trials, answers = data.trials, data.answers
    timings = _TimingJoin(survey=survey)
    person_ids, trial_ids = data.people["id"].tolist(), trials["id"].tolist()
    main_kind = (trials["kind"] == KIND_MAIN).tolist()
    masks = [mask for _, mask in data.excluded_flags.items()]
    order = ctx["order"]
    for begin in range(0, order.size, 8192):
        block = order[begin:begin + 8192]
        columns = zip(
            data.t_row[block].tolist(), data.p_row[block].tolist(), answers["choice"][block].tolist(),
            answers["shown_position"][block].tolist(), answers["rt_ms"][block].tolist(), data.correct[block].tolist(),
            data.included[block].tolist(), zip(*(mask[block].tolist() for mask in masks)),
        )
        for t, p, choice, shown, rt_ms, correct, included, flagged in columns:
            timing, mistimed = timings.at(participant=person_ids[p], trial=trial_ids[t])
            yield t, p, choice, shown, rt_ms, correct, included, flagged, main_kind[t], timing, mistimed


def _rules(*, survey: Survey, flags: list[str], flagged: tuple, main: bool, mistimed: bool) -> list[str]:
    """The exclusion rules that remove an answer (rt_floor only counts on main trials)."""
    rules = [rule for rule, hit in zip(flags, flagged) if hit and (rule != "rt_floor" or main)]
    if mistimed and main and survey.exclude_mistimed:  # the answer-level rule, as survey_data_load applies it
        rules.append("mistimed")
    return rules


def _person_columns(*, data: SurveyData, devices: dict, p: int) -> tuple[dict, dict]:
    person = int(data.people["id"][p])
    device = devices.get(person, {})
    return ({"participant": person, "external_id": data.people["external_id"][p]},
            {f"device_{fact}": device.get(fact) for fact in DEVICE_FACTS})


def _choice_columns(*, survey: Survey, ctx: dict, head: dict, options: list[int], choice: int, shown: int) -> dict:
    category, chosen_category = _categories(
        survey=survey, task_type=head["task_type"], target_option=head["target_option"], choice=choice
    )
    return {
        "choice": choice if choice >= 0 else None,
        "shown_position": shown if shown >= 0 else None,
        "chosen_image": ctx["sha"].get(options[choice], "") if 0 <= choice < 3 else "",
        "category": category,
        "chosen_category": chosen_category,
    }


def answer_rows(*, survey: Survey, data: SurveyData | None = None) -> Iterator[dict]:
    """Every answer as one flat dict (ANSWER_COLUMNS), with the rules that exclude it.

    What is the same for every answer of a trial or of a participant is built once."""
    data = data or survey_data_load(survey=survey)
    ctx = _context(data)
    devices = survey_device_table(survey=survey)
    flags = list(data.excluded_flags)  # rule names, rt_floor always among them
    by_trial: dict[int, tuple[dict, dict, list[int]]] = {}
    by_person: dict[int, tuple[dict, dict]] = {}
    for t, p, choice, shown, rt_ms, correct, included, flagged, main, timing, mistimed in _answers(
        survey=survey, data=data, ctx=ctx
    ):
        if t not in by_trial:
            by_trial[t] = _trial_columns(data=data, ctx=ctx, t=t)
        head, validity, options = by_trial[t]
        if p not in by_person:
            by_person[p] = _person_columns(data=data, devices=devices, p=p)
        ids, device = by_person[p]
        yield {
            "survey": survey.slug,
            **ids,
            **head,
            **_choice_columns(survey=survey, ctx=ctx, head=head, options=options, choice=choice, shown=shown),
            "correct": correct,
            "rt_ms": rt_ms if math.isfinite(rt_ms) else None,
            **timing,
            "mistimed": mistimed,
            "included": included,
            "exclusion_rules": ";".join(_rules(survey=survey, flags=flags, flagged=flagged, main=main,
                                               mistimed=mistimed)),
            **validity,
            **device,
        }


def _csv_cells(values) -> str:
    """Cells as csv.writer writes them inside a row (quoted where needed; None as empty), without the line end."""
    values = list(values)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values + [""])  # a trailing cell: never a lone "" row
    return buffer.getvalue()[:-2]  # less the trailing cell's "," and the line end


def answers_csv(*, survey: Survey, data: SurveyData | None = None) -> Iterator[str]:
    """The long-format CSV (header first), in blocks of 8,192 answers: answer_rows as csv.writer writes them, byte
    for byte, but without a dict per answer. What a participant, a trial or a trial's (choice, position, rules)
    share is encoded once as CSV text; each answer adds only its own numbers (ten times faster at 1,000,000 answers,
    bench/archive.py; tests/results/test_exports_answers_csv.py holds it to the rows)."""
    data = data or survey_data_load(survey=survey)
    ctx = _context(data)
    devices = survey_device_table(survey=survey)
    flags = list(data.excluded_flags)
    by_trial: dict[int, tuple[dict, str, list[int], str]] = {}
    by_person: dict[int, tuple[str, str]] = {}
    by_choice: dict[tuple[int, int, int], str] = {}
    by_rules: dict[tuple, str] = {}
    no_timing = _csv_cells(_TimingJoin.NONE.values())
    text = {True: "True", False: "False"}  # what csv.writer writes for a bool
    lines = [_csv_cells(ANSWER_COLUMNS) + "\n"]
    for t, p, choice, shown, rt_ms, correct, included, flagged, main, timing, mistimed in _answers(
        survey=survey, data=data, ctx=ctx
    ):
        trial = by_trial.get(t)
        if trial is None:
            head, validity, options = _trial_columns(data=data, ctx=ctx, t=t)
            trial = by_trial[t] = (head, _csv_cells(head.values()), options, _csv_cells(validity.values()))
        person = by_person.get(p)
        if person is None:
            ids, device = _person_columns(data=data, devices=devices, p=p)
            person = by_person[p] = (_csv_cells([survey.slug, *ids.values()]), _csv_cells(device.values()))
        chosen = by_choice.get((t, choice, shown))
        if chosen is None:
            chosen = by_choice[(t, choice, shown)] = _csv_cells(_choice_columns(
                survey=survey, ctx=ctx, head=trial[0], options=trial[2], choice=choice, shown=shown).values())
        key = (flagged, main, mistimed)
        rules = by_rules.get(key)
        if rules is None:
            rules = by_rules[key] = _csv_cells(
                [";".join(_rules(survey=survey, flags=flags, flagged=flagged, main=main, mistimed=mistimed))])
        measured = no_timing if timing is _TimingJoin.NONE else ",".join(
            "" if v is None else str(v) for v in timing.values())
        lines.append(
            f"{person[0]},{trial[1]},{chosen},{text[correct]},{rt_ms if math.isfinite(rt_ms) else ''},{measured},"
            f"{text[mistimed]},{text[included]},{rules},{trial[3]},{person[1]}\n"
        )
        if len(lines) >= 8192:
            yield "".join(lines)
            lines.clear()
    yield "".join(lines)


def answers_json(*, survey: Survey, data: SurveyData | None = None) -> Iterator[str]:
    """The long-format rows as one JSON array, streamed."""
    yield "["
    for n, row in enumerate(answer_rows(survey=survey, data=data)):
        yield ("," if n else "") + json.dumps(row)
    yield "]"


def _mvh_conditions(data: SurveyData) -> list[str]:
    """A classification condition's name for model-vs-human: what differs between the survey's conditions (a layer
    sweep: the layer; several networks: the network and layer), as model-vs-human names a condition by the one thing
    its experiment varies; the layer where there is one condition."""
    varying = [f for f in CONDITION_FIELDS if len({str(c.get(f, "")) for c in data.conditions}) > 1] or ["layer"]
    return [" · ".join(str(c[f]) for f in varying if c.get(f)) or _label(c) for c in data.conditions]


def _mvh_rows(*, survey: Survey, data: SurveyData) -> Iterator[tuple[int, list]]:
    """(participant id, model-vs-human row) of every included main-trial answer, per participant then trial.

    A classification answer: object_response = the chosen category, category = the true one, condition = the layer
    or network (_mvh_conditions), so model-vs-human's accuracy (object_response == category) is the recognition
    accuracy. 2AFC and clustering: category = the target photo's name; object_response = the name of the chosen
    option (the target photo's name when the target was chosen, else "seed" or "foil-<sha12>"), so their accuracy
    is our correctness; condition = the full condition label. trial = the answer's ordinal within its subject.
    """
    ctx = _context(data)
    trials, answers = data.trials, data.answers
    classify_conditions = _mvh_conditions(data)
    previous, ordinal = -1, 0
    for i in ctx["order"]:
        if not data.included[i]:
            continue
        t, p = int(data.t_row[i]), int(data.p_row[i])
        ordinal = ordinal + 1 if p == previous else 1
        previous = p
        choice = int(answers["choice"][i])
        c = int(data.trial_condition[t])
        task_type = trials["task_type"][t]
        if task_type_get(task_type).options_are_categories:
            true_option = int(trials["target_option"][t])
            category, response = _categories(survey=survey, task_type=task_type, target_option=true_option, choice=choice)
            condition = classify_conditions[c] if c >= 0 else ""
        else:
            category = ctx["photo"].get(int(trials["target"][t]), f"target-{t}")
            if choice == trials["target_option"][t]:
                response = category
            elif 0 <= choice < 3 and trials["options"][t][choice] == trials["seed_image"][t]:
                response = "seed"
            else:
                option = int(trials["options"][t][choice]) if 0 <= choice < 3 else -1
                response = f"foil-{ctx['sha'].get(option, '')[:12]}"
            condition = _label(_condition_of(data, t))
        person = int(data.people["id"][p])
        yield person, [
            _mvh_subject(person), 1, ordinal, round(float(answers["rt_ms"][i]) / 1000, 4),
            response, category, condition, f"{ctx['sha'].get(int(trials['query'][t]), '')}.png",
        ]


def _mvh_subject(participant: int) -> str:
    return f"subject-{participant}"  # model-vs-human tells people from networks by the "subject-" prefix


def mvh_csv(*, survey: Survey, data: SurveyData | None = None) -> Iterator[str]:
    """model-vs-human raw-data layout, every subject in one CSV: subj, Session, trial, rt (s), object_response,
    category, condition, imagename (see _mvh_rows). Included main-trial answers only."""
    data = data or survey_data_load(survey=survey)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MVH_COLUMNS)
    for _, row in _mvh_rows(survey=survey, data=data):
        writer.writerow(row)
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


class _ZipSink(io.RawIOBase):
    """A write-only, unseekable file that zipfile writes into (it then uses data descriptors); take() hands over
    what was written since the last call, so a zip streams out subject by subject."""

    def __init__(self):
        super().__init__()
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def mvh_experiment_name(*, survey: Survey) -> str:
    """The experiment (model-vs-human's dataset) name: the survey's slug; "_" separates the parts of their file
    names, so it becomes "-" (as their ResultPrinter does with model names)."""
    return survey.slug.replace("_", "-")


def mvh_file_name(*, experiment: str, subject: str, session: int = 1) -> str:
    """model-vs-human's raw-data file naming: <experiment>_<subject>_session_<n>.csv (e.g.
    raw-data/high-pass/high-pass_subject-01_session_1.csv in bethgelab/model-vs-human)."""
    return f"{experiment}_{subject}_session_{session}.csv"


def mvh_zip(*, survey: Survey, data: SurveyData | None = None) -> Iterator[bytes]:
    """model-vs-human's raw data as they ship it: one CSV per subject (MVH_COLUMNS, see _mvh_rows) under a folder
    named after the experiment, <experiment>/<experiment>_subject-<id>_session_1.csv, so unzipping into their
    raw-data/ folder makes an experiment their plotting code reads. Streamed one subject at a time; entries carry a
    fixed date, so the same answers give the same bytes."""
    data = data or survey_data_load(survey=survey)
    experiment = mvh_experiment_name(survey=survey)
    sink = _ZipSink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED)

    def entry(person: int, rows: list[list]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(MVH_COLUMNS)
        writer.writerows(rows)
        info = zipfile.ZipInfo(f"{experiment}/{mvh_file_name(experiment=experiment, subject=_mvh_subject(person))}")
        info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
        archive.writestr(info, buffer.getvalue())
        return sink.take()

    person, rows = None, []
    for subject, row in _mvh_rows(survey=survey, data=data):
        if subject != person and rows:
            yield entry(person, rows)
            rows = []
        person = subject
        rows.append(row)
    if rows:
        yield entry(person, rows)
    archive.close()
    yield sink.take()


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
    # Every row names the analysis plan it was computed under (results.plans): its hash and how many deviations.
    plan = report.get("plan") or {}
    plan_values = [plan.get("sha256"), plan.get("frozen_sha256"), len(plan.get("deviations") or [])]
    writer.writerow(columns + ([f"recognition_{k}" for k in RECOGNITION_COLUMNS] if recognition else [])
                    + ["plan_sha256", "plan_frozen_sha256", "plan_deviations"])
    for i, c in enumerate(report["conditions"]):
        proxy = c.get("proxy", {})
        values = [nested[k](c) if k in nested else c.get(k) for k in columns[: -2 * len(metrics) or None]]
        values += [proxy.get(m, {}).get("alignment") for m in metrics]
        values += [proxy.get(m, {}).get("error_consistency", {}).get("kappa") for m in metrics]
        values += [recognition[i].get(k) for k in RECOGNITION_COLUMNS] if recognition else []
        writer.writerow(["" if v is None else v for v in values + plan_values])
    return buffer.getvalue()


# A classification survey's conditions.csv adds these (stats.recognition), prefixed "recognition_".
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
    "model-vs-human.zip": ("application/zip", mvh_zip),
    "participants.csv": ("text/csv", participants_csv),
}
RAW_ID_EXPORTS = ["answers.csv", "answers.json", "participants.csv"]  # the ones with an external_id column


def export_stream(*, survey: Survey, name: str, raw_ids: bool = False) -> tuple[str, Iterator[str]]:
    """(content type, chunks) of one export by name (a key of EXPORTS); external IDs pseudonymised unless raw_ids."""
    content_type, write = EXPORTS[name]
    return content_type, write(survey=survey, data=survey_data_load(survey=survey, raw_ids=raw_ids))
