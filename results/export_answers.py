"""The per-answer exports: long-format rows (answer_rows), as CSV (answers.csv) and JSON (answers.json).

Rows are produced lazily from the arrays of results.survey_data.survey_data_load, so a large survey streams.
Option k is the trial's option k (its canonical order), `shown_position` where the participant saw the chosen
option (0 = left; empty if not recorded); roles say which option was the target, the IRI's seed or
another foil. The iri_* columns carry the query IRI's validity record (iri_worker: its percentile in the null
distribution of distances between unrelated photos, its representation distance to its target, and whether the
network's top-1 label of the IRI equals its label of the target, with both labels); empty where there is none.
`external_id` is the survey's pseudonym of the Prolific PID or MTurk worker ID (surveys.selectors.participant_pseudonym)
unless the data was loaded with raw_ids.

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
from collections.abc import Iterator

from iri_worker.validity_record import ValidityRecord
from stats.exclusions import KIND_MAIN
from surveys.counted_answers import ANSWER_TIMING_FIELDS, survey_answer_timing_rows
from surveys.models import Survey

from .export_lookups import answer_categories, answer_lookups, condition_label, condition_of_trial
from .selectors import CONDITION_FIELDS, KIND_CODES, survey_device_table
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


NO_RECORD = ValidityRecord()  # the validity columns of a trial without an IRI (catch, practice)


def _validity_columns(record: ValidityRecord) -> dict:
    return {
        "iri_null_percentile": record.percentile,
        "iri_rep_distance": record.distance,
        "iri_label_match": record.label_match,
        "iri_model_label": record.iri_label_shown,
        "target_model_label": record.target_label_shown,
    }


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



def _trial_columns(*, data: SurveyData, ctx: dict, t: int) -> tuple[dict, dict, list[int]]:
    """One trial's columns, the same for each answer: (those before choice, the IRI's validity columns, option ids)."""
    trials = data.trials
    condition = condition_of_trial(data, t)
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
        "condition": condition_label(condition),
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
    category, chosen_category = answer_categories(
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
    ctx = answer_lookups(data)
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
    ctx = answer_lookups(data)
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
