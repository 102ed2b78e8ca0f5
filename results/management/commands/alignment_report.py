import json

from django.core.management.base import BaseCommand, CommandError

from backend.exceptions import ApplicationError
from results.export_answers import answers_csv, answers_json
from results.export_conditions import conditions_csv
from results.export_model_vs_human import mvh_csv
from results.export_participants import participants_csv
from results.proxy_choices import PROXY_METRICS, trial_proxy_choices_compute
from results.services import alignment_report
from results.survey_data import exclusion_rules_for
from surveys.models import Survey

ANSWER_EXPORTS = {"csv": answers_csv, "json": answers_json, "mvh": mvh_csv, "participants": participants_csv}


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


class Command(BaseCommand):
    help = (
        "The alignment report of a survey: alignment per condition with a two-way bootstrap CI and a Wilson interval, "
        "exclusions per rule (one-sided responders among them), Fleiss' kappa over chose-target / chose-foil, the split-half "
        "ceiling, the proxy beside the humans, paired comparisons, the share of answers per screen position, and what the "
        "survey builder left out. "
        "--answers exports every answer instead (long-format csv/json, or mvh = model-vs-human's raw-data CSV), "
        "or participants: one CSV row per participant (share correct, share per screen position, exclusion rules)."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--format", choices=["json", "csv", "table"], default="table", help="report format")
        parser.add_argument("--answers", choices=sorted(ANSWER_EXPORTS), help="export every answer instead of the report")
        parser.add_argument("--output", "-o", help="write to this file instead of stdout")
        parser.add_argument("--n-boot", type=int, default=1000)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--catch-min-accuracy", type=float, help="default: the survey's threshold")
        parser.add_argument("--rt-floor-ms", type=float, help="default: the survey's RT floor")
        parser.add_argument("--include-incomplete", action="store_true", help="keep sessions that never completed")
        parser.add_argument("--one-side-max-fraction", metavar="SHARE|off",
                            help="exclude participants with at least this share of answers on one screen position "
                                 "(2AFC: above 0.5 and at most 1; clustering: above 1/3), or 'off'; default: the survey's")
        parser.add_argument("--one-side-min-trials", type=int, help="the one-sided rule judges participants from this many answers on")
        parser.add_argument("--compute-proxy", choices=PROXY_METRICS, action="append", default=[],
                            help="first compute the proxy's choice for every trial with this metric (repeatable)")

    def handle(self, *args, slug, format, answers, output, n_boot, seed, catch_min_accuracy, rt_floor_ms,
               include_incomplete, one_side_max_fraction, one_side_min_trials, compute_proxy, **options):
        survey = Survey.objects.filter(slug=slug).first()
        if survey is None:
            raise CommandError(f"There is no survey with the slug '{slug}'.")
        if n_boot < 1:
            raise CommandError("--n-boot must be at least 1.")
        try:
            rules = exclusion_rules_for(
                survey=survey, catch_min_accuracy=catch_min_accuracy, rt_floor_ms=rt_floor_ms,
                require_complete=False if include_incomplete else None,
                one_side_max_fraction=one_side_max_fraction, one_side_min_trials=one_side_min_trials,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        for metric in compute_proxy:
            try:
                n = trial_proxy_choices_compute(survey=survey, metric=metric)
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
            self.stderr.write(f"proxy {metric}: computed {n} trials")
        out = open(output, "w", newline="") if output else self.stdout
        try:
            if answers:
                for chunk in ANSWER_EXPORTS[answers](survey=survey):
                    out.write(chunk) if output else out.write(chunk, ending="")
                return
            report = alignment_report(survey=survey, n_boot=n_boot, seed=seed, rules=rules)
            if format == "json":
                text = json.dumps(report)
            elif format == "csv":
                text = conditions_csv(report=report)
            else:
                text = "\n".join(self._table(report))
            out.write(text if output else text)
        finally:
            if output:
                out.close()

    def _table(self, report: dict):
        yield (f"survey {report['survey']} ({report['task_type']}, chance {_fmt(report['chance'], 2)}): {report['n_answers']} answers, "
               f"{report['n_included']} main-trial answers included; CI: {report['ci']}")
        for note in report["notes"]:
            yield f"NOTE: {note}"
        yield f"{'condition':<56} {'alignment':>9} {'95% CI':>13} {'Wilson':>13} {'n':>6} {'people':>6} {'items':>5}  note"
        for c in report["conditions"]:
            ci = f"{_fmt(c['ci_low'])}–{_fmt(c['ci_high'])}"
            wilson = f"{_fmt(c['wilson_low'])}–{_fmt(c['wilson_high'])}"
            label = (c["condition"] or c["name"])[:56]
            yield f"{label:<56} {_fmt(c['alignment']):>9} {ci:>13} {wilson:>13} {c['n_answers']:>6} {c['n_participants']:>6} {c['n_items']:>5}  {c['note']}"
            yield f"    {_kappa(c['fleiss_kappa'])}"
            ceiling = c["ceiling"]
            if ceiling["ceiling"] is not None:
                yield f"    split-half ceiling {_fmt(ceiling['ceiling'])} (r {_fmt(ceiling['split_half_r'])}, {ceiling['n_items']} items)"
            else:
                yield f"    split-half ceiling —: {ceiling['note']}"
            for metric, p in c["proxy"].items():
                ec = p["error_consistency"]
                yield f"    proxy {metric}: alignment {_fmt(p['alignment'])} on {p['n_items']} items; error consistency kappa {_fmt(ec['kappa'])} (c_obs {_fmt(ec['c_obs'])}, c_exp {_fmt(ec['c_exp'])}, n {ec['n_trials']})"
        ex = report["exclusions"]
        yield f"exclusions ({ex['answers_excluded']} main-trial answers, {ex['participants_excluded']} participants wholly):"
        for r in ex["counts"]:
            state = " (not applicable)" if r.get("applies") is False else ""
            yield f"    {r['rule']:<15} {r['participants']:>6} participants {r['answers']:>8} answers  {r['description']}{state}"
        ag = report["agreement"]
        yield f"agreement: {_kappa(ag['fleiss_kappa'])}; split-half ceiling {_fmt(ag['ceiling']['ceiling'])} {ag['ceiling']['note']}"
        yield from _sides(report["sides"])
        yield from _recognition(report.get("recognition"))
        yield from _collection(report["collection"])
        yield from _design(report["design"])
        yield from _plan(report["plan"])
        for d in report["comparisons"]:
            yield f"    {d['a']} − {d['b']}: {_fmt(d['difference'])} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]{' paired' if d['paired'] else ''}"


def _kappa(k: dict) -> str:
    """Fleiss' kappa with its categories: 'Fleiss' kappa (chose_target vs chose_foil) 0.012 over 30 items, 10 raters per item'."""
    text = f"Fleiss' kappa ({' vs '.join(k['categories'])}) {_fmt(k['value'])} over {k['items']} items"
    raters = k.get("raters_per_item")
    if raters:
        spread = f"{raters['min']}" if raters["min"] == raters["max"] else f"{raters['min']}–{raters['max']}, median {raters['median']:g}"
        text += f", {spread} raters per item"
    return text + (f" ({k['note']})" if k.get("note") else "")


def _spread(s: dict | None) -> str:
    return "—" if not s else f"min {_fmt(s['min'])}, median {_fmt(s['median'])}, max {_fmt(s['max'])}"


def _sides(sides: dict):
    shares = ", ".join(f"{k} {_fmt(v)}" for k, v in enumerate(sides["shares"]))
    yield (f"screen positions (share of main and catch answers per position, 0 = left): {shares}; largest {_fmt(sides['largest_share'])} "
           f"over {sides['answers']} answers ({sides['answers_unknown_position']} without a recorded position)")
    if sides["positions"] == 2:
        yield f"    per participant, share on the left: {_spread(sides['participant_position_0_share'])}"
    yield f"    per participant, largest share on one position: {_spread(sides['participant_largest_share'])} ({sides['participants']} participants)"
    rule = sides["rule"]
    if rule["one_side_max_fraction"] is None:
        yield f"    one-sided rule off; {sides['participants_judged']} participants have at least {rule['one_side_min_trials']} answers"
    else:
        yield (f"    one-sided (largest share >= {rule['one_side_max_fraction']:g} of at least {rule['one_side_min_trials']} answers): "
               f"{sides['one_sided']} of {sides['participants_judged']} participants judged")


def _recognition(recognition: dict | None):
    if not recognition:
        return
    yield (f"recognition (people vs the network on the same stimuli; {recognition['answers_without_network_verdict']} "
           f"answers without a network verdict, {recognition['mistimed_answers']} mistimed):")
    for c in recognition["conditions"]:
        yield (f"    {c['condition'][:48]:<48} people {_fmt(c['accuracy'])} [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}] "
               f"chance {_fmt(c['chance'])} network {_fmt(c['network_accuracy'])} difference {_fmt(c['accuracy_difference'])} "
               f"c_obs {_fmt(c['observed_consistency'])} kappa {_fmt(c['error_consistency'])} n {c['n_answers']}  {c['note']}")


def _collection(collection: dict):
    yield f"stopping rule: {collection['stopping_rule']}"
    if collection["design"] != "adaptive":
        return
    state = f"stopped ({collection['stop_reason']})" if collection["stopped"] else "still open"
    yield f"    collection {state}: {collection['stop_note']} {collection['interval']}"
    for c in collection["sets"]:  # the units the rule stops on
        met = ", met" if c["meets_goal"] else f", missed by {_fmt(c['missed_by'])}"
        yield (f"    {c['name'][:28]:<28} ({(c['condition'] or '')[:26]:<26}) design-effect Wilson {_fmt(c['low'])}–"
               f"{_fmt(c['high'])} half-width {_fmt(c['half_width'])} (goal {_fmt(c['goal'])}{met}), "
               f"n {c['n_answers']}, n_eff {_fmt(c['n_effective'], 1)}, deff {_fmt(c['design_effect'], 2)}")


def _design(design: dict):
    if not design["recorded"]:
        yield f"design: {design['note']}"
        return
    vf = design["validity_filter"]
    filt = "off" if not vf["on"] else f"max percentile {vf['max_percentile']}, label match {'required' if vf['require_label_match'] else 'not required'}"
    yield f"design: validity filter {filt}; {design['left_out']['total']} IRIs left out; size policy {design['size_policy'] or '—'}"
    for r in design["left_out"]["reasons"]:
        yield f"    left out {r['count']:>5}  {r['reason']}: {r['description']}"
    for e in design["resized"]:
        yield f"    resized set {e.get('set')} {e.get('name', '')}: {e.get('images')} images from {_size(e.get('from'))} to {_size(e.get('to'))}"


def _plan(plan: dict):
    """The analysis plan's hash (results.plans) and each deviation from it: version, when, who, what, why."""
    state = f"version {plan['version']}, frozen {plan['frozen_sha256']}" if plan["frozen"] else "not frozen"
    yield f"analysis plan: sha256 {plan['sha256']} ({state}); {len(plan['deviations'])} deviation(s) {plan['note']}"
    for d in plan["deviations"]:
        what = ", ".join(f"{c['path']} {c['before']!r} → {c['after']!r}" for c in d["changed"])
        yield f"    deviation v{d['version']} {d['at'][:16]} by {d['by'] or '—'}: {what}; reason: {d['reason']}"
    if plan["unrecorded_changes"]:
        yield f"    changed without a version: {', '.join(c['path'] for c in plan['unrecorded_changes'])}"


def _size(value) -> str:
    """[w, h] as 'w×h' (anything else as it is)."""
    return "×".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
