"""python manage.py participant_erase --prolific-pid X | --worker-id Y [--team T] [--survey S] [--dry-run]"""
import json

from django.core.management.base import BaseCommand, CommandError

from backend.exceptions import ApplicationError
from surveys.models import Survey
from surveys.services import participant_erase
from teams.actors import Actor
from teams.selectors import team_for_command


class Command(BaseCommand):
    help = (
        "Erase one participant's data (a data-rights request): every session of a Prolific PID or MTurk worker ID, "
        "with its answers, events and assignments; their slots become free. Without --team, in every team's surveys. "
        "Prints what was erased as JSON; the audit log keeps a hash of the ID, never the ID."
    )

    def add_arguments(self, parser):
        parser.add_argument("--prolific-pid", default="")
        parser.add_argument("--worker-id", default="", help="MTurk worker ID")
        parser.add_argument("--team", help="only this team's surveys (its id or exact name)")
        parser.add_argument("--survey", help="only this survey (its slug)")
        parser.add_argument("--dry-run", action="store_true", help="say what would be erased, erase nothing")

    def handle(self, *args, **options):
        try:
            surveys = Survey.objects.all()
            if options["team"] is not None:
                surveys = surveys.filter(team=team_for_command(value=options["team"]))
            if options["survey"] is not None:
                surveys = surveys.filter(slug=options["survey"])
                if not surveys.exists():
                    raise ApplicationError(f"No survey '{options['survey']}'{' in that team' if options['team'] else ''}.")
            result = participant_erase(
                surveys=surveys, prolific_pid=options["prolific_pid"], worker_id=options["worker_id"],
                dry_run=options["dry_run"],
                actor=Actor.command("participant_erase"),
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(result, indent=2))
