"""Probes for orchestrators, and production settings that pass Django's deployment checks."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def test_healthz_answers_without_touching_anything():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_database_and_broker(settings):
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_says_unavailable_when_the_broker_is_unreachable(settings):
    from backend.celery import app

    original = app.conf.broker_url, app.conf.broker_write_url
    app.conf.broker_url = app.conf.broker_write_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = Client().get("/readyz")
    finally:
        app.conf.broker_url, app.conf.broker_write_url = original
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")
    assert response.json()["checks"]["database"] == "ok"


def test_production_settings_pass_the_deploy_check():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}  # set by the browser tests only
    env.update(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 20 + "k3y-with-enough-variety-" + "y" * 30)
    run = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    env["DJANGO_DEBUG"] = "false"
    run = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "DJANGO_SECRET_KEY" in run.stderr


def test_log_lines_are_json_with_the_ids_of_what_they_are_about():
    import json
    import logging

    from backend.logging import JsonFormatter

    record = logging.LogRecord("iri_worker.tasks", logging.ERROR, __file__, 1, "chunk %s failed", (3,), None)
    record.job_id, record.chunk_id = 7, 3

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "chunk 3 failed" and line["level"] == "ERROR"
    assert (line["job_id"], line["chunk_id"]) == (7, 3)


def test_env_example_lists_every_variable_the_settings_read():
    import re

    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z0-9_]+)"', (ROOT / "backend" / "settings.py").read_text()))
    read |= set(re.findall(r'os\.environ\.get\("([A-Z0-9_]+)"', (ROOT / "gunicorn.conf.py").read_text()))
    listed = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))

    assert len(read) > 20 and not read - listed, f".env.example misses {sorted(read - listed)}"


def test_source_maps_are_served_only_in_debug(settings):
    assert (ROOT / "frontend" / "dist" / "participant.js.map").exists(), "build the front end: make frontend"
    settings.DEBUG = False
    hidden = Client().get("/static/participant.js.map")
    settings.DEBUG = True
    shown = Client().get("/static/participant.js.map")

    assert hidden.status_code == 404 and shown.status_code == 200
    assert Client().get("/static/participant.js").status_code == 200
