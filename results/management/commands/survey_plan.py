"""python manage.py survey_plan SLUG --half-width 0.05 [--rate R] [--fee 0.33] [--seconds-per-trial S]
[--seconds-per-participant S] [--p P[,P...]] [--cap N] [--team T] [--format table|json]"""
import json

from django.core.management.base import BaseCommand, CommandError

from backend.exceptions import ApplicationError
from surveys.planning import survey_plan
from surveys.models import Survey
from teams.selectors import team_for_command


def _shares(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise CommandError(f"p: give shares between 0 and 1, comma-separated; got '{text}'.") from None


class Command(BaseCommand):
    help = (
        "The budget planner: participants and cost to bring every IRI set's 95 % CI half-width to --half-width, "
        "under fixed N and under adaptive allocation. Seconds per trial and per participant, the expected alignment "
        "per set and the design effect come from the survey's pilot sessions unless given; the plan says which."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--half-width", type=float, required=True, help="the goal: 95 %% CI half-width, in (0, 0.5)")
        parser.add_argument("--rate", type=float, help="pay per hour in PROLIFIC_CURRENCY (default: Prolific's recommended: £9, $12; below £6, $8 a warning)")
        parser.add_argument("--fee", type=float, default=0.0, help="the platform's fee as a fraction of the pay (0.33 = 33 %%)")
        parser.add_argument("--seconds-per-trial", type=float, help="default: the pilot's")
        parser.add_argument("--seconds-per-participant", type=float, help="the fixed part (consent, instructions); default: the pilot's")
        parser.add_argument("--p", help="expected alignment: one share for every set, or one per set, comma-separated; default: the pilot's")
        parser.add_argument("--cap", type=int, help="cap on participants; default: the survey's max_participants")
        parser.add_argument("--team", help="the survey's team (its id or exact name)")
        parser.add_argument("--format", choices=["table", "json"], default="table")

    def handle(self, *args, slug, half_width, rate, fee, seconds_per_trial, seconds_per_participant, p, cap, team, format,
               **options):
        try:
            surveys = Survey.objects.all() if team is None else Survey.objects.filter(team=team_for_command(value=team))
            survey = surveys.filter(slug=slug).first()
            if survey is None:
                raise ApplicationError(f"There is no survey with the slug '{slug}'{' in that team' if team else ''}.")
            plan = survey_plan(
                survey=survey, half_width=half_width, rate_per_hour=rate, fee=fee, seconds_per_trial=seconds_per_trial,
                seconds_per_participant=seconds_per_participant, p=_shares(p) if p else None, cap_participants=cap,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(plan, indent=2) if format == "json" else "\n".join(plan_table(plan)))


def plan_table(plan: dict) -> list[str]:
    """The plan as text: assumptions with their sources, each set's need, fixed N beside adaptive, warnings."""
    a, money = plan["assumptions"], plan["currency_symbol"]
    lines = [
        f"Budget plan for {plan['survey']}: half-width {plan['half_width']:g} · {money}{plan['rate_per_hour']:.2f}/h · "
        f"fee {plan['fee']:.0%}",
        "",
        "assumption                    value  source",
    ]
    for name in ("seconds_per_trial", "seconds_per_participant", "design_effect", "trials_per_participant",
                 "trial_lists", "cap_participants"):
        value = a[name]["value"]
        shown = "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        lines.append(f"{name.replace('_', ' '):<26}{shown:>8}  {a[name]['source']}")
    pilot = plan["pilot"]
    if pilot["sessions"]:
        lines.append(f"(pilot: {pilot['sessions']} completed sessions, median {pilot['session_seconds']:g} s; "
                     f"seconds per trial from the {pilot['seconds_per_trial_method']})")
    lines += ["", f"{'IRI set':<24}{'p':>6}  {'source':<8}{'trials':>7}{'answers needed':>16}{'N needed':>10}"]
    for c in plan["conditions"]:
        lines.append(f"{c['name'][:23]:<24}{c['p']:>6.2f}  {c['p_source']:<8}{c['trials']:>7}{c['answers_needed']:>16}"
                     f"{c['ratings_per_list_needed'] if c['ratings_per_list_needed'] is not None else '—':>10}")
    fixed, adaptive = plan["fixed"], plan["adaptive"]
    lines += [
        "",
        f"time per participant {plan['seconds_per_participant']:g} s · pay {money}{plan['pay_per_participant']:.2f} · "
        f"cost with fee {money}{plan['cost_per_participant']:.2f}",
        "",
        f"{'':<16}{'fixed N':>12}{'adaptive':>12}",
        f"{'answers':<16}{fixed['answers']:>12}{adaptive['answers']:>12}",
        f"{'participants':<16}{fixed['participants']:>12}{adaptive['participants']:>12}",
        f"{'N per list':<16}{fixed['ratings_per_list']:>12}{adaptive['ratings_per_list']:>12}",
        f"{f'cost ({money})':<16}{fixed['cost']:>12,.2f}{adaptive['cost']:>12,.2f}",
        f"{'reachable':<16}{'yes' if fixed['reachable'] else 'no':>12}{'yes' if adaptive['reachable'] else 'no':>12}",
    ]
    lines += [f"warning: {w}" for w in plan["warnings"]]
    return lines
