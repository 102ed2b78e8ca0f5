"""python manage.py survey_plan_export SLUG [--out DIR] [--team T]"""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backend.exceptions import ApplicationError
from results.plan_export import plan_files
from results.plans import plan_report
from surveys.models import Survey
from teams.selectors import team_for_command


class Command(BaseCommand):
    help = (
        "Write a survey's analysis plan, ready to attach to an OSF pre-registration: SLUG-analysis-plan.md (conditions "
        "and their IRI sets, design, stopping rule or N, exclusion rules, primary statistic and interval, every "
        "deviation), SLUG-analysis-plan.json (the plan frozen before the data as canonical JSON: its sha256sum is the "
        "hash the report shows) and SLUG-analysis-plan-versions.json (every version, with what changed and why)."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--out", default=".", help="folder to write the files to (made if missing); default: here")
        parser.add_argument("--team", help="the survey's team (its id or exact name)")

    def handle(self, *args, slug, out, team, **options):
        try:
            surveys = Survey.objects.all() if team is None else Survey.objects.filter(team=team_for_command(value=team))
            survey = surveys.filter(slug=slug).first()
            if survey is None:
                raise ApplicationError(f"There is no survey with the slug '{slug}'{' in that team' if team else ''}.")
            files = plan_files(survey=survey)
            report = plan_report(survey=survey)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        folder = Path(out)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():  # written whole, each to a temporary name first
                partial = folder / f".{name}.partial"
                partial.write_text(text, encoding="utf-8")
                partial.replace(folder / name)
        except OSError as exc:
            raise CommandError(f"Could not write to {folder}: {exc.strerror or exc}.") from exc
        frozen = report["frozen_sha256"] or report["sha256"]
        state = "frozen" if report["frozen"] else "not frozen yet (a draft)"
        self.stdout.write(f"{survey.slug}: plan {state}, sha256 {frozen}; {len(report['deviations'])} deviation(s)")
        for name in files:
            self.stdout.write(f"    {folder / name}")
