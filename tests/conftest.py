"""The cast every test can ask for: a researcher, a finished IRI set, a live survey, a real worker."""
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings as django_settings
from django.db import connection
from rest_framework.test import APIClient

from backend.celery import app as celery_app
from iri_worker.demo_photos import bundled_photos
from iri_worker.models import IriJob
from iri_worker.services import iri_job_run, iri_spec_validate, target_photo_create
from surveys.services import survey_create, survey_publish
from teams.models import Role
from teams.services import membership_set, team_create

TINY_SPEC = {"backbone": "tiny_cnn", "steps": 5, "step_size": 0.5, "image_size": 32, "rng_seed": 0}

# Each pytest process (a run, or one of xdist's workers) has a database and broker keys of its own, so that a
# second run of the suite beside this one shares nothing with it. Processes the tests start inherit the prefix.
PROCESS_NAME = f"p{os.getpid()}"
os.environ["CELERY_BROKER_KEY_PREFIX"] = f"test-{PROCESS_NAME}:"
if celery_app.conf.broker_url.startswith("redis"):
    celery_app.conf.broker_transport_options = {"global_keyprefix": os.environ["CELERY_BROKER_KEY_PREFIX"]}


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    for db in django_settings.DATABASES.values():
        if db["ENGINE"] != "django.db.backends.sqlite3":  # SQLite's test database is in memory, private already
            test = db.setdefault("TEST", {})
            test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_{PROCESS_NAME}"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path_factory):
    """Every test stores images under one temporary folder (shared with worker processes it starts)."""
    root = tmp_path_factory.getbasetemp() / "media"
    root.mkdir(exist_ok=True)
    settings.MEDIA_ROOT = str(root)
    return root


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Tests make users by the hundred: a cheap hash instead of a million PBKDF2 rounds (0.3 s a user here)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def team(db):
    """The lab that owns the cast's photos, IRI sets and surveys."""
    return team_create(name="Lab A")


@pytest.fixture
def researcher(django_user_model, team):
    """A superuser who is also the owner of Lab A (tests of team rules make members without superpowers)."""
    user = django_user_model.objects.create_user(username="alice", password="pw-alice-123", is_staff=True, is_superuser=True)
    membership_set(team=team, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def researcher_client(researcher):
    client = APIClient()
    client.force_authenticate(researcher)
    return client


@pytest.fixture
def photos(team):
    """Three of the bundled photos as Lab A's target photos."""
    return [target_photo_create(team=team, name=name, data=data) for name, data in list(bundled_photos().items())[:3]]


def finished_iri_set(photos, **spec) -> IriJob:
    """An IRI set made by the real engine in this process (tiny model, a few steps)."""
    job = IriJob.objects.create(team=photos[0].team, name="tiny set", spec=iri_spec_validate({**TINY_SPEC, **spec}))
    job.targets.set(photos)
    iri_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == IriJob.Status.DONE, job.error
    return job


@pytest.fixture
def iri_set(photos):
    return finished_iri_set(photos)


@pytest.fixture
def live_survey(iri_set):
    survey = survey_create(slug="pilot", title="Which is closer?", iri_jobs=[iri_set], rng_seed=1)
    return survey_publish(survey=survey)


def database_url(name: str | None = None) -> str:
    """The URL of the test database (or of another database on the same server), for processes the tests start."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name or db['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_key() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def celery_worker_process(transactional_db, settings):
    """A real Celery worker process on the real broker, using the test database and media folder."""
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("needs PostgreSQL and Redis: run through `make test` (DATABASE_URL, CELERY_BROKER_URL)")
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    with celery_app.connection_for_write() as conn:  # nothing left over from earlier runs
        for queue in ("gpu", "celery"):
            conn.default_channel.queue_purge(queue)
    name = f"test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "backend", "worker", "-Q", "gpu,celery", "-c", "1", "-n", name, "--loglevel", "INFO"],
        cwd=django_settings.BASE_DIR,
        env=env,
    )
    deadline = time.monotonic() + 90
    while not celery_app.control.ping(destination=[name], timeout=1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the Celery worker did not start")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_for(predicate, *, timeout: float = 120, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
