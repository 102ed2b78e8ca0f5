"""Faults survived: PostgreSQL restarts while bots are answering, and nothing is lost or doubled.

The web server, the bots and the setup talk to a PostgreSQL cluster of this test's own (initdb in a temporary
folder, a free port), so restarting it disturbs nobody else.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.conftest import free_port, wait_for
from tests.surveys import gunicorn_server

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
LISTS, N, TRIALS_EACH = 3, 20, 1 + 1 + 2  # one main, one catch and two practice trials per participant

SETUP = """
from iri_worker.demo_photos import bundled_photos
from iri_worker.services import target_photo_create
from surveys.services import survey_create, survey_publish
from teams.services import team_create
from tests.conftest import finished_iri_set
team = team_create(name="Lab A")
photos = [target_photo_create(team=team, name=n, data=d) for n, d in list(bundled_photos().items())[:3]]
survey = survey_create(slug="restart", title="t", iri_jobs=[finished_iri_set(photos)], trials_per_participant=1,
                       ratings_per_list=%d, catch_trials=1, practice_trials=2)
survey_publish(survey=survey)
""" % N


class PrivatePostgres:
    """A throw-away PostgreSQL cluster; as root it runs as the `postgres` user (PostgreSQL refuses root)."""

    def __init__(self):
        self.port = free_port()
        self.home = Path(tempfile.mkdtemp(prefix="iri-pg-"))
        self.data = self.home / "data"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/iri"
        if os.geteuid() == 0:
            shutil.chown(self.home, user="postgres", group="postgres")

    def run(self, program: str, *args: str) -> str:
        command = [str(PG_BIN / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.home)
        assert done.returncode == 0, f"{program} failed: {done.stderr[-2000:]}"
        return done.stdout

    def init(self):
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")
        self.start()
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "iri")

    def start(self):
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.home} -c fsync=off -c max_connections=200"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.home / "log"), "-o", options, "-w", "-t", "60", "start")

    def stop(self):
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def sql(self, query: str) -> str:
        return self.run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "iri", "-At", "-c", query).strip()

    def remove(self):
        if (self.data / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def private_postgres():
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"needs PostgreSQL's server programs in {PG_BIN} (set PG_BIN)")
    cluster = PrivatePostgres()
    cluster.init()
    yield cluster
    cluster.remove()


def manage(*args: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def test_postgresql_restarted_while_bots_answer_loses_nothing_and_doubles_nothing(private_postgres):
    env = {"DATABASE_URL": private_postgres.url, "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
           "RATE_LIMIT_ENROLL": "1000000/min", "RATE_LIMIT_SESSION": "1000000/min"}
    finish(manage("migrate", "-v", "0", env=env))
    finish(manage("shell", "-c", SETUP, env=env))
    web, url = gunicorn_server.start(workers=4, env=env)  # keeps connections 60 s, as the README recommends
    try:
        bots = manage("run_bots", "restart", "--participants", str(LISTS * N + 15), "--concurrency", "12",
                      "--policy", "target", "--live", "--attentive-only", "--think-ms", "250", "--seed", "1",
                      "--base-url", url, env=env)
        answers = lambda: int(private_postgres.sql("SELECT count(*) FROM surveys_response"))  # noqa: E731
        wait_for(lambda: answers() >= 20 or bots.poll() is not None, timeout=120, every=0.1)
        assert bots.poll() is None, "the bots finished before the restart: " + bots.stderr.read()[-2000:]

        private_postgres.stop()
        try:
            # While it is down, the API says so plainly: a 503 to retry after, not a 500 with a trace.
            down = requests.post(f"{url}/api/p/surveys/restart/enroll", json={"prolific_pid": "probe"}, timeout=30)
            assert down.status_code == 503, down.text
            assert "database is unavailable" in down.json()["message"] and down.headers["Retry-After"] == "2"
            time.sleep(2)
        finally:
            private_postgres.start()
        stored_before_restart = answers()
        summary = json.loads(finish(bots).strip().splitlines()[-1])

        # Once it is back, no request fails on a connection the restart broke (each is checked before reuse).
        private_postgres.stop()
        private_postgres.start()
        statuses = [requests.get(f"{url}/api/p/sessions/nobody/trials", timeout=30).status_code for _ in range(12)]
    finally:
        gunicorn_server.stop(web)

    assert statuses == [404] * 12, statuses
    assert 0 < stored_before_restart < answers(), "the bots answered both before and after the restart"
    assert (summary["lost"], summary["duplicates"], summary["errors"]) == (0, 0, 0), summary["error_samples"]
    assert summary["completed"] == LISTS * N and summary["full"] == 15
    assert summary["responses"] == LISTS * N * TRIALS_EACH
    # Fill level: every list has exactly N filled live slots, each a completed session with one answer per trial.
    per_list = private_postgres.sql(
        "SELECT count(*) FILTER (WHERE s.filled_at IS NOT NULL), count(DISTINCT p.id) FILTER (WHERE p.status = 'completed') "
        "FROM surveys_triallist l JOIN surveys_slot s ON s.trial_list_id = l.id AND NOT s.is_pilot "
        "LEFT JOIN surveys_participant p ON p.id = s.participant_id GROUP BY l.id"
    )
    assert per_list.splitlines() == [f"{N}|{N}"] * LISTS, per_list
    per_trial = private_postgres.sql(
        "SELECT t.kind, count(r.id) FROM surveys_trial t LEFT JOIN surveys_response r ON r.trial_id = t.id "
        "WHERE t.kind <> 'practice' GROUP BY t.id, t.kind"
    )
    assert set(per_trial.splitlines()) == {f"main|{N}", f"catch|{N}"}, per_trial
    assert private_postgres.sql(
        "SELECT count(*) FROM (SELECT 1 FROM surveys_response GROUP BY participant_id, trial_id HAVING count(*) > 1) d"
    ) == "0"
