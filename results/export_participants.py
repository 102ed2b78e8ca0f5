"""One row per participant (participants.csv): answers, share correct, share per screen position, and the
exclusion rules that leave them out."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import numpy as np

from stats.exclusions import KIND_CATCH, KIND_MAIN, position_counts
from surveys.models import Survey

from .survey_data import SurveyData, survey_data_load

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
