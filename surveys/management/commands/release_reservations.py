"""python manage.py release_reservations: time out expired reservations and free their slots (cron-able)."""
from django.core.management.base import BaseCommand

from surveys.services import reservations_release_expired


class Command(BaseCommand):
    help = "Release expired survey reservations (also done on every enrollment and by the Celery beat task)."

    def handle(self, *args, **options):
        self.stdout.write(f"released {reservations_release_expired()}")
