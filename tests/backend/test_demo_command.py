"""`manage.py demo --no-serve` on the embedded stack: SQLite, the filesystem broker, its own worker process."""
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_prepares_a_live_survey_from_iris_made_by_its_worker(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_BROKER_DIR=str(tmp_path / "broker"),
        DJANGO_MEDIA_ROOT=str(tmp_path / "media"),
    )
    run = subprocess.run(
        [sys.executable, "manage.py", "demo", "--no-serve", "--steps", "3", "--image-size", "64", "--timeout", "300"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=420,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = run.stdout.strip().splitlines()
    summary = json.loads(line)
    assert summary["survey_url"] == "http://127.0.0.1:8000/s/demo/"
    assert summary["iri_images"] == 4 and summary["trials"] == 4
    assert summary["admin_user"] == "admin" and summary["admin_password"]
    assert "IRIs: 100%" in run.stderr  # progress was shown while the worker generated them
    assert len(list((tmp_path / "media" / "img").rglob("*.png"))) >= 4 * 2 + 1
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        audited = db.execute("SELECT action, username FROM teams_auditentry WHERE action LIKE 'survey.%'").fetchall()
    assert sorted(audited) == [("survey.create", "command:demo"), ("survey.plan_freeze", "command:demo"),
                               ("survey.publish", "command:demo")]
