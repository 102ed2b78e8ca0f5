"""conditions.csv: the report's condition table (its JSON, results.services.alignment_report) as CSV, the columns a
classification survey's recognition adds, and the analysis plan every row was computed under."""
from __future__ import annotations

import csv
import io

from .selectors import CONDITION_FIELDS

# A classification survey's conditions.csv adds these (stats.recognition), prefixed "recognition_".
RECOGNITION_COLUMNS = ["accuracy", "ci_low", "ci_high", "chance", "network_accuracy", "accuracy_difference",
                       "observed_consistency", "error_consistency", "n_answers"]


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

