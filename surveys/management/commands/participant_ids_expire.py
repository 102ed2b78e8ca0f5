"""python manage.py participant_ids_expire: drop the external IDs of sessions past their survey's retention period."""
import json

from django.core.management.base import BaseCommand

from surveys.services import participant_ids_expire
from teams.actors import Actor


class Command(BaseCommand):
    help = (
        "Blank the Prolific / MTurk IDs of sessions that ended more than their survey's retention_days ago "
        "(also done hourly by the Celery beat task). Prints how many sessions per survey."
    )

    def handle(self, *args, **options):
        self.stdout.write(json.dumps(participant_ids_expire(actor=Actor.command("participant_ids_expire"))))
