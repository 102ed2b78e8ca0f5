import json

from django.core.management.base import BaseCommand, CommandError

from results.services import alignment_report
from surveys.models import Survey


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


class Command(BaseCommand):
    help = "Print the alignment of each IRI set of a survey (share of answers choosing the target, n, 95 % CI)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--format", choices=["json", "table"], default="table")
        parser.add_argument("--n-boot", type=int, default=1000)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, slug, format, n_boot, seed, **options):
        survey = Survey.objects.filter(slug=slug).first()
        if survey is None:
            raise CommandError(f"There is no survey with the slug '{slug}'.")
        if n_boot < 1:
            raise CommandError("--n-boot must be at least 1.")
        report = alignment_report(survey=survey, n_boot=n_boot, seed=seed)
        if format == "json":
            self.stdout.write(json.dumps(report))
            return
        self.stdout.write(f"survey {report['survey']}: {report['n_answers']} answers; CI: {report['ci']}")
        self.stdout.write(f"{'IRI set':<28} {'recipe':<10} {'seed':<12} {'alignment':>9} {'95% CI':>15} {'n':>6} {'people':>6}")
        for c in report["conditions"]:
            ci = f"{_fmt(c['ci_low'])}–{_fmt(c['ci_high'])}"
            self.stdout.write(
                f"{c['name'][:28]:<28} {c['recipe']:<10} {c['seed_kind']:<12} {_fmt(c['alignment']):>9} {ci:>15} "
                f"{c['n_answers']:>6} {c['n_participants']:>6}"
            )
