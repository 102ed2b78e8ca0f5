"""The benchmark page's tables, made from saved runs instead of typed by hand (a MkDocs hook, and plain functions).

A saved run is ``docs/benchmarks/<name>.json``, written by ``scripts/bench_save.sh bench/<bench>.py --json ...``:

    {"benchmark": "engine", "saved_as": "engine", "command": "python bench/engine.py --json", "date": "...Z",
     "commit": "<sha>", "dirty": false, "host": {"cpu_model": "...", "cpus": 2, "gpu": null}, "result": {...}}

``result`` is the benchmark's own ``--json`` line. In a page, a block

    <!-- bench: engine -->
    (anything: what a reader of the raw Markdown sees)
    <!-- /bench -->

is replaced at build time by the tables of every saved run of that benchmark (file names in order), or by a line
saying that no run is saved yet. Only the standard library: tests import this file on its own.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

BLOCK = re.compile(r"<!-- bench: (?P<name>[a-z0-9_-]+) -->.*?<!-- /bench -->", re.S)
MISSING = "—"

# Per benchmark, the sections of its tables: ("rows", title, path to a list (or a dict of dicts, keyed "_key"),
# [(column, path)]) or ("fields", title, path to a dict, [(figure, path)] or None for its every plain value).
# Paths are dotted keys into the benchmark's JSON (a tuple of paths: several figures in one cell); a key the JSON
# lacks shows as a dash.
_SWEEP_COLUMNS = [
    ("model", "model"), ("px", "image_size"), ("batch", "batch"), ("layer", "layer"),
    ("engine steps/s", "engine_steps_per_s"), ("folded floor steps/s", "folded_floor_steps_per_s"),
    ("engine ÷ folded floor", "engine_over_folded_floor"), ("engine adds ms/step", "engine_added_ms_per_step"),
    ("÷ folded floor, steps taking turns", "interleaved.engine_over_folded_floor"),
]
SECTIONS: dict[str, list[tuple]] = {
    "engine": [
        ("rows", "Engine against the floors (CPU)", "configs", [
            ("model", "model"), ("px", "image_size"), ("batch", "batch"), ("engine steps/s", "engine_steps_per_s"),
            ("÷ floor", "engine_over_floor"), ("÷ folded floor", "engine_over_folded_floor"),
            ("÷ paper-style loop", "engine_over_reference"), ("layout", "engine_layout"),
            ("bf16 speed-up", "bf16.speedup"),
        ]),
        ("rows", "Layer sweeps (CPU)", "layer_sweep", _SWEEP_COLUMNS),
        ("rows", "Overhead probe (CPU)", "overhead_probe", _SWEEP_COLUMNS),
        ("fields", "Layout calibration at the demo's job", "demo_layout_calibration", [
            ("model", "model"), ("px", "image_size"), ("batch", "batch"), ("job steps", "job_steps"),
            ("pairs of fresh-process jobs", "pairs"), ("layout chosen", "layout_chosen"),
            ("job s, layout measured (median)", "job_s_layout_measured"),
            ("job s, layout named (median)", "job_s_layout_named"),
            ("calibration adds (s)", "added_s"), ("its share of the job", "added_share_of_job"),
            ("the pairs' own shares (median)", "pair_added_share_median"),
            ("the share, taken at the end of step 10 (the goal's figure)", "added_share_of_job_by_step_10"),
            ("later steps' ms, measured ÷ named (median)", "later_steps_measured_over_named"),
            ("goal: share at most", "goal_share_at_most"),
            ("time inside calibration, the job's own steps included (ms)", "calibration_cost_ms_recorded"),
            ("the job's steps it timed, per run", "calibration_run_steps_by_run"),
        ]),
        ("rows", "Engine against the floors (CUDA)", "cuda", [
            ("model", "model"), ("px", "image_size"), ("batch", "batch"), ("÷ floor", "engine_over_floor"),
            ("÷ folded floor", "engine_over_folded_floor"), ("÷ paper-style loop", "engine_over_reference"),
            ("fp32 images·steps/s", "fp32_images_steps_per_s"), ("bf16 images·steps/s", "bf16_images_steps_per_s"),
            ("peak MB fp32 / bf16", ("fp32_peak_mb", "bf16_peak_mb")), ("host syncs/step", "host_syncs_per_step"),
        ]),
        ("fields", "Goals", "targets", None),
    ],
    "survey_load": [
        ("rows", "Saturation (closed loop, no think time)", "saturation", [
            ("connections", "_key"), ("answers/s", "answers_per_s"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"),
            ("lost", "lost"), ("duplicated", "duplicated"), ("errors", "errors"),
            ("CPU µs/answer gunicorn / PostgreSQL / generator",
             ("cpu_us_per_answer.gunicorn", "cpu_us_per_answer.postgres", "cpu_us_per_answer.load_generator")),
            ("other work %", "other_work_pct"),
        ]),
        ("fields", "Realistic load (open loop)", "realistic", [
            ("participants", "participants"), ("think time s", "think_s"), ("offered answers/s", "offered_per_s"),
            ("answers/s", "answers_per_s"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"),
            ("generator lag p99 ms", "generator_send_lag_p99_ms"), ("lost", "lost"), ("duplicated", "duplicated"),
            ("errors", "errors"), ("other work %", "other_work_pct"),
        ]),
        ("fields", "The database's floor", "", [
            ("pgbench single-row inserts/s at 32 clients", "pgbench_tps_32"),
            ("answers/s ÷ pgbench", "ratio_answers_per_pgbench"), ("at connections", "ratio_at_connections"),
            ("saturation load generator", "load_generator.saturation"),
        ]),
    ],
    "analysis": [
        ("fields", "The report on a large survey", "", [
            ("answers", "answers"), ("participants", "participants"), ("items", "items"),
            ("conditions", "conditions"), ("bootstrap resamples", "n_boot"), ("report s (best)", "report_s"),
            ("report s (median)", "report_median_s"), ("goal: report s at most", "target_report_s"),
            ("answer query s", "query_s"), ("bare GROUP BY s", "group_by_s"),
            ("query ÷ GROUP BY", "query_over_group_by"), ("goal: at most", "target_query_over_group_by"),
            ("query ÷ GROUP BY, no parallel workers", "query_serial_over_group_by_serial"),
            ("peak RSS MB", "peak_rss_mb"),
        ]),
    ],
    "archive": [
        ("fields", "The study archive of a large survey", "", [
            ("answers", "answers"), ("images", "images"), ("archive s", "archive_s"),
            ("goal: archive s under", "target_archive_s"), ("report alone s", "report_s"),
            ("archive bytes", "archive_bytes"), ("answers CSV bytes", "answers_csv_bytes"),
            ("peak memory growth MB", "peak_rss_growth_mb_during_archive"), ("reanalyse.py s", "reanalyse_s"),
            ("numbers recomputed", "reanalyse_compared"), ("numbers different", "reanalyse_different"),
        ]),
    ],
    "validity": [
        ("rows", "What the validity record costs", "jobs", [
            ("job", "job"), ("IRI run s", "run_s"), ("validity record s", "validity_s"),
            ("share", "validity_over_run"), ("null photos", "null_photos"), ("null pairs", "null_pairs"),
            ("null cached", "null_cached"),
        ]),
        ("fields", "Loss curve and goal", "", [
            ("loss-curve sampling, share of the run", "loss_curve.over_run"),
            ("goal: validity share at most", "goal.validity_over_run"),
        ]),
    ],
    "adaptive": [
        ("rows", "Adaptive collection against fixed N and an oracle (value ± Monte Carlo s.e.)", "summary", [
            ("scenario", "_key"), ("answers adaptive (mean)", "answers_adaptive_mean"),
            ("fixed N answers", "answers_fixed"), ("N", "fixed_n"), ("oracle answers", "answers_oracle"),
            ("adaptive ÷ oracle", "adaptive_over_oracle"), ("adaptive ÷ fixed", "adaptive_over_fixed"),
            ("coverage, worst set", "coverage_worst"), ("coverage, sets 0.2–0.8", "coverage_mid_pooled"),
            ("short of the goal", "short_of_goal"),
        ]),
        ("fields", "Goals met", "goals_met", None),
        ("fields", "Settings", "", [("studies per scenario", "studies"), ("goal half-width", "goal_half_width"),
                                     ("seconds", "run_s")]),
    ],
    "load_held": [
        ("fields", "Participants and an IRI job on one machine", "", [
            ("participants", "participants"), ("answers", "answers"), ("answers/s", "answers_per_s"),
            ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("errors", "errors"), ("5xx", "http_5xx"),
            ("broken connections", "http_broken"), ("lost", "lost"), ("duplicated", "duplicated"),
            ("IRI job", "iri_job.status"), ("IRI job s", "iri_job.seconds"),
            ("pgbench inserts/s at 32 clients", "pgbench_tps_32"), ("answers/s ÷ pgbench", "ratio_answers_per_pgbench"),
        ]),
    ],
}


def value_at(data, path):
    """The value at a dotted path, or at a list of keys (None when any key is missing)."""
    for key in path if isinstance(path, list) else path.split(".") if path else []:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def fmt(value) -> str:
    """One cell: thousands separators, yes/no, a dash for nothing, [value, s.e.] as value ± s.e."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"{fmt(value[0])} ± {fmt(value[1])}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value).replace("|", "\\|").replace("\n", " ")


def cell(row: dict, path) -> str:
    if isinstance(path, tuple):  # several figures in one cell
        return " / ".join(fmt(value_at(row, p)) for p in path)
    return fmt(value_at(row, path))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def section(result: dict, kind: str, title: str, path: str, columns) -> str | None:
    """One section's Markdown, or None when the run has nothing for it (e.g. no CUDA rows on a CPU host)."""
    data = value_at(result, path)
    if kind == "rows":
        if isinstance(data, dict):
            data = [{"_key": key, **value} for key, value in data.items() if isinstance(value, dict)]
        if not data:
            return None
        table = markdown_table([c for c, _ in columns], [[cell(row, p) for _, p in columns] for row in data])
    else:
        if not isinstance(data, dict) or not data:
            return None
        items = columns or [(key, [key]) for key, value in data.items() if not isinstance(value, (dict, list))]
        table = markdown_table(["figure", "value"], [[name, cell(data, p)] for name, p in items])
    return f"**{title}**\n\n{table}"


def run_header(filename: str, run: dict) -> str:
    result = run.get("result") or {}
    host = run.get("host") or {}
    commit = (run.get("commit") or "")[:12] or MISSING
    facts = [f"`{run.get('command') or MISSING}`", f"{run.get('date') or MISSING}",
             f"commit `{commit}`" + (" with uncommitted changes" if run.get("dirty") else "")]
    machine = [host.get("cpu_model"), f"{host['cpus']} CPUs" if host.get("cpus") else None,
               f"CPU capability {result['cpu_capability']}" if result.get("cpu_capability") else None,
               f"{result['threads']} torch threads" if result.get("threads") else None,
               result.get("cuda_device") or host.get("gpu")]
    facts.append("on " + ", ".join(m for m in machine if m) if any(machine) else "host not recorded")
    if result.get("quick"):
        facts.append("**--quick** (proves the script works; not a measurement)")
    return f"#### [{filename}]({filename})\n\n" + "; ".join(facts) + "."


def render_run(filename: str, run: dict) -> str:
    """One saved run as Markdown: its header, then its sections (a benchmark without sections: its plain values)."""
    result = run.get("result") or {}
    name = run.get("benchmark") or result.get("benchmark") or ""
    sections = SECTIONS.get(name) or [("fields", "Figures", "", None)]
    parts = [run_header(filename, run)]
    parts += [s for s in (section(result, *spec) for spec in sections) if s]
    return "\n\n".join(parts)


def render(name: str, runs: list[tuple[str, dict]]) -> str:
    """Every saved run of benchmark ``name`` (runs: (file name, saved JSON), in order), or the no-run line."""
    mine = [(filename, run) for filename, run in runs if run.get("benchmark") == name]
    if not mine:
        return (f"*No saved run yet.* Save one with `scripts/bench_save.sh bench/{name}.py --json` "
                "(alone on the machine).")
    return "\n\n".join(render_run(filename, run) for filename, run in mine)


def runs_load(folder: Path) -> list[tuple[str, dict]]:
    return [(path.name, json.loads(path.read_text())) for path in sorted(Path(folder).glob("*.json"))]


def blocks_fill(markdown: str, runs: list[tuple[str, dict]]) -> str:
    return BLOCK.sub(lambda m: render(m.group("name"), runs), markdown)


# ----------------------------------------------------------------------------------------- the MkDocs hook


def on_page_markdown(markdown, page, config, files, **kwargs):
    if "<!-- bench: " not in markdown:
        return markdown
    folder = Path(config["docs_dir"]) / Path(page.file.src_uri).parent
    return blocks_fill(markdown, runs_load(folder))
