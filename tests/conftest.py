"""The cast every test can ask for: a researcher, a finished IRI set, a live survey, a real worker."""
import os
import re
import socket
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection
from rest_framework.test import APIClient

from backend.celery import app as celery_app
from iri_worker.models import IriJob
from iri_worker.services import iri_spec_validate
from operations.models import OperationRun
from operations.tasks import operation_run_execute
from surveys.services import survey_create, survey_publish
from teams.models import Role
from teams.services import membership_set, team_create
from tests.factories import TargetPhotoFactory, iri_set_make

TINY_SPEC = {"backbone": "tiny_cnn", "steps": 5, "step_size": 0.5, "image_size": 32, "rng_seed": 0}

# Each pytest process (a run, or one of xdist's workers) has a database and broker keys of its own, so that a
# second run of the suite beside this one shares nothing with it. Processes the tests start inherit the prefix.
PROCESS_NAME = f"p{os.getpid()}"
os.environ["CELERY_BROKER_KEY_PREFIX"] = f"test-{PROCESS_NAME}:"
if django_settings.CELERY_BROKER_URL.startswith("redis"):  # the settings were read before this line: tell them too
    django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = os.environ["CELERY_BROKER_KEY_PREFIX"]
    celery_app.conf.broker_transport_options = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS
# A test's setup builds the world without saying who did it (services' actor= left out): nothing is audited then.
# The processes the tests start (commands, workers, the web server) keep the production rule: no actor, no write.
django_settings.AUDIT_ACTOR_REQUIRED = False
# pytest-django runs tests with DEBUG off, so WhiteNoise would scan every static file (the admin's, DRF's, the app's)
# each time a test client loads the middleware: about 30 ms a client, thousands of clients. Finding a file when it is
# asked for serves the same files (the servers the tests start keep the production behaviour).
django_settings.WHITENOISE_AUTOREFRESH = True


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    for db in django_settings.DATABASES.values():
        if db["ENGINE"] != "django.db.backends.sqlite3":  # SQLite's test database is in memory, private already
            _drop_databases_of_gone_processes(db)
            test = db.setdefault("TEST", {})
            test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_{PROCESS_NAME}"


def _drop_databases_of_gone_processes(db: dict) -> None:
    """A run that was killed leaves its database behind: drop those whose process (the name's end) is gone."""
    with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
        names = admin.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [f"test_{db['NAME']}_"])
        for (name,) in names.fetchall():
            pid = re.fullmatch(r".*_p(\d+)", name)
            if pid and not _process_alive(int(pid[1])):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


# `make test-quick` leaves out what starts processes (a Celery worker, gunicorn, Chromium, a command, a database
# cluster) or flushes the database (transactional tests), and the fuzzer: the rest runs in a couple of minutes.
SLOW_FIXTURES = {"celery_worker_process", "celery_worker_starter", "transactional_db", "live_server", "server", "page", "browser", "worker"}
SLOW_MODULES = {
    "tests/backend/test_api_fuzz.py", "tests/backend/test_backup_restore.py", "tests/backend/test_database_restart.py",
    "tests/backend/test_demo_command.py", "tests/backend/test_faults.py", "tests/backend/test_secret_checks.py",
    "tests/iri_worker/test_reproduce_command.py", "tests/iri_worker/test_worker.py", "tests/teams/test_admin_crawl.py",
    "tests/test_compose.py", "tests/test_docs.py", "tests/test_layers.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.nodeid.split("::")[0]
        if module in SLOW_MODULES or SLOW_FIXTURES & set(item.fixturenames) or item.get_closest_marker("heavy"):
            item.add_marker(pytest.mark.slow)


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
    return [TargetPhotoFactory(team=team, photo=i) for i in range(3)]


def finished_iri_set(photos, **spec) -> IriJob:
    """An IRI set of the tiny model (a few steps): made by the real engine in this process, or replayed from its
    recording when these inputs were made before (tests/factories.py; tests about IRI jobs always run the engine)."""
    job = iri_set_make(photos=photos, spec=iri_spec_validate({**TINY_SPEC, **spec}))
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
def celery_worker_starter(transactional_db, settings):
    """Starts a real Celery worker process on the real broker, using the test database and media folder, when the
    test calls it (``start(env={...})``, extra environment for its settings): so a test can show what a request
    leaves to the worker before one runs. Every worker it started is stopped afterwards."""
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("needs PostgreSQL and Redis: run through `make test` (DATABASE_URL, CELERY_BROKER_URL)")
    with celery_app.connection_for_write() as conn:  # nothing left over from earlier runs
        for queue in ("gpu", "celery"):
            conn.default_channel.queue_purge(queue)
    procs = []

    def start(env: dict | None = None) -> subprocess.Popen:
        procs.append(_celery_worker_start(settings, env or {}))
        return procs[-1]

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def celery_worker_process(celery_worker_starter):
    """A real Celery worker process, running from the start of the test."""
    return celery_worker_starter()


def _celery_worker_start(settings, env: dict) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        **env,
    }
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
    return proc


def queued_runs_perform() -> list[OperationRun]:
    """What a worker does with the operation runs that requests queued (run here, oldest first); the runs after."""
    ids = list(OperationRun.objects.filter(status=OperationRun.Status.QUEUED).order_by("id").values_list("pk", flat=True))
    for run_id in ids:
        operation_run_execute(run_id)
    return list(OperationRun.objects.filter(pk__in=ids).order_by("id"))


def survey_posted(client, body: dict) -> dict:
    """POST /api/surveys/ as a researcher's script does (201: stored, "building"), then what a worker does with the
    build it queued; the survey as GET /api/surveys/<slug> shows it after the build."""
    created = client.post("/api/surveys/", body, format="json")
    assert created.status_code == 201 and created.json()["build"] == "building", created.json()
    queued_runs_perform()
    return client.get(f"/api/surveys/{body['slug']}").json()


def wait_for(predicate, *, timeout: float = 120, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
