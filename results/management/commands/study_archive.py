"""python manage.py study_archive SLUG --out FILE.zip [--team T] [--identified]"""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backend.exceptions import ApplicationError
from results.archive import study_archive_write
from surveys.models import Survey
from teams.actors import Actor
from teams.selectors import team_for_command


class Command(BaseCommand):
    help = (
        "Write a survey's study archive: a Psych-DS dataset (zip) with the answers, trials, sessions, conditions and "
        "assignments as CSVs described by Frictionless table schemas, the stimuli as PNGs with their provenance, the "
        "design, the frozen analysis plan and its deviations, the report, a manifest of SHA-256 sums and reanalyse.py, "
        "which recomputes the report with Python and numpy alone. External IDs are pseudonymised unless --identified."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--out", required=True, help="the zip file to write (replaced whole at the end)")
        parser.add_argument("--team", help="the survey's team (its id or exact name)")
        parser.add_argument("--identified", action="store_true",
                            help="keep raw Prolific PIDs / MTurk worker IDs (recorded in the audit log)")
        parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the report (default 1000)")
        parser.add_argument("--seed", type=int, default=0, help="the report's bootstrap seed (default 0)")

    def handle(self, *args, slug, out, team, identified, n_boot, seed, **options):
        try:
            surveys = Survey.objects.all() if team is None else Survey.objects.filter(team=team_for_command(value=team))
            survey = surveys.filter(slug=slug).first()
            if survey is None:
                raise ApplicationError(f"There is no survey with the slug '{slug}'{' in that team' if team else ''}.")
            if not Path(out).parent.is_dir():
                raise ApplicationError(f"The folder {Path(out).parent} does not exist; no archive was written.")
            result = study_archive_write(survey=survey, out=out, identified=identified, n_boot=n_boot, seed=seed,
                                         actor=Actor.command("study_archive"))
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        except OSError as exc:
            raise CommandError(f"Could not write {out}: {exc.strerror or exc}.") from exc
        ids = "raw external IDs (audit-logged)" if identified else "external IDs pseudonymised"
        self.stdout.write(
            f"{survey.slug}: {result['answers']} answers, {result['files']} files, {result['bytes']:,} bytes, {ids}\n"
            f"    {result['path']}\n    check and recompute: unzip it and run  python reanalyse.py"
        )
