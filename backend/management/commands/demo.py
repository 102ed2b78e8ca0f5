"""Set up a working platform: admin user, bundled photos, an IRI set made by a real worker, a live survey."""
import json
import os
import secrets
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from iri_worker.demo_photos import bundled_photos, demo_job_spec
from iri_worker.models import IriJob, TargetPhoto
from iri_worker.services import iri_job_create, target_photo_create
from surveys.models import Survey
from surveys.services import survey_create, survey_publish
from teams.actors import Actor
from teams.models import Role, Team
from teams.services import membership_set

DEMO_SLUG = "demo"
DEMO_TEAM = "Demo lab"
DEMO = Actor.command("demo")  # who made the demo's photos, IRI set and survey, in the audit log


class Command(BaseCommand):
    help = "Prepare the demo (admin, photos, IRIs from EfficientNet-Lite0 by a real worker, a live 2AFC survey) and serve it."

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="Prepare, print one JSON line and exit.")
        parser.add_argument("--steps", type=int, default=int(os.environ.get("DEMO_STEPS", 300)))
        parser.add_argument("--image-size", type=int, default=int(os.environ.get("DEMO_IMAGE_SIZE", 128)))
        parser.add_argument("--timeout", type=float, default=1800, help="Seconds to wait for the IRIs.")
        parser.add_argument("--addrport", default="127.0.0.1:8000")

    def handle(self, *args, no_serve, steps, image_size, timeout, addrport, **options):
        call_command("migrate", verbosity=0)
        username, password, team = self._admin()
        targets = self._photos(team)
        worker = self._start_worker()
        try:
            job = self._iri_job(targets, steps=steps, image_size=image_size, timeout=timeout)
            survey = self._survey(job)
            url = f"http://{addrport}/s/{survey.slug}/"
            summary = {
                "survey_url": url,
                "iri_images": job.images.count(),
                "trials": survey.trials.count(),
                "iri_job": job.pk,
                "admin_url": f"http://{addrport}/admin/",
                "admin_user": username,
                "admin_password": password,
                "alignment_api": f"http://{addrport}/api/results/surveys/{survey.slug}/alignment",
            }
            if no_serve:
                self.stdout.write(json.dumps(summary))
                return
            self.stdout.write(
                f"\nThe demo is ready.\n  survey:  {url}\n  admin:   {summary['admin_url']}  "
                f"(user {username}, password {password})\n  results: {summary['alignment_api']}\n"
            )
            call_command("runserver", addrport, use_reloader=False)
        finally:
            self._stop_worker(worker)

    def _admin(self) -> tuple[str, str, Team]:
        username = "admin"
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": "admin@example.org"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        team, _ = Team.objects.get_or_create(name=DEMO_TEAM)
        membership_set(team=team, user=user, role=Role.OWNER, actor=DEMO)
        return username, password, team

    def _photos(self, team: Team) -> list[TargetPhoto]:
        photos = []
        for name, data in bundled_photos().items():
            existing = TargetPhoto.objects.filter(team=team, name=name).first()
            photos.append(existing or target_photo_create(team=team, name=name, data=data, actor=DEMO))
        return photos

    def _start_worker(self) -> subprocess.Popen:
        self.stderr.write("Starting a Celery worker process (queues gpu, celery)…")
        cmd = [sys.executable, "-m", "celery", "-A", "backend", "worker", "-Q", "gpu,celery", "-c", "1", "--loglevel", "WARNING"]
        # The worker's own output goes to stderr, so stdout keeps only what this command prints.
        return subprocess.Popen(cmd, cwd=settings.BASE_DIR, start_new_session=True, stdout=sys.stderr)

    def _stop_worker(self, worker: subprocess.Popen) -> None:
        if worker.poll() is None:
            worker.terminate()  # a warm shutdown: the main process stops its pool itself
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)

    def _iri_job(self, targets, *, steps: int, image_size: int, timeout: float) -> IriJob:
        spec = demo_job_spec(steps=steps, image_size=image_size)
        name = f"demo: EfficientNet-Lite0, reg_free, {steps} steps, {image_size} px"
        job = IriJob.objects.filter(team=targets[0].team, name=name, status=IriJob.Status.DONE).first()
        if job is not None:
            self.stderr.write(f"Reusing the finished IRI set '{name}'.")
            return job
        job = iri_job_create(targets=targets, spec=spec, name=name, actor=DEMO)
        self.stderr.write(f"Generating {len(targets)} IRIs ({steps} steps at {image_size} px) on the worker…")
        deadline = time.monotonic() + timeout
        with tqdm(total=100, unit="%", desc="IRIs", file=sys.stderr) as bar:
            while True:
                job.refresh_from_db()
                bar.update(round(job.progress * 100) - bar.n)
                if job.status == IriJob.Status.DONE:
                    return job
                if job.status == IriJob.Status.FAILED:
                    raise CommandError(f"The demo IRI job failed: {job.error}")
                if time.monotonic() > deadline:
                    raise CommandError(f"The demo IRI job did not finish within {timeout:.0f} s (status {job.status}).")
                time.sleep(0.5)

    def _survey(self, job: IriJob) -> Survey:
        survey = Survey.objects.filter(slug=DEMO_SLUG).first()
        if survey is None or not survey.iri_jobs.filter(pk=job.pk).exists():
            if survey is not None:
                survey.slug = f"{DEMO_SLUG}-old-{survey.pk}"
                survey.save(update_fields=["slug"])
            survey = survey_create(slug=DEMO_SLUG, title="Which image is closer?", iri_jobs=[job], actor=DEMO)
        return survey_publish(survey=survey, actor=DEMO)
