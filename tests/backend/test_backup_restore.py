"""A backup taken with scripts/backup.sh restores into an empty database and gives the same report."""
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from surveys.services import participant_consent, participant_enroll, response_record
from tests.conftest import database_url, new_key

ROOT = Path(__file__).resolve().parents[2]


def report(env: dict, slug: str) -> dict:
    run = subprocess.run([sys.executable, "manage.py", "alignment_report", slug, "--format", "json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


def test_a_restored_backup_gives_the_same_report(transactional_db, live_survey, settings, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("backups are PostgreSQL dumps: run through `make test`")
    for pid, offset in (("a", 0), ("b", 1)):
        participant, _ = participant_enroll(survey=live_survey, prolific_pid=pid)
        participant_consent(participant=participant)
        for a in participant.assignments.select_related("trial"):
            choice = (a.trial.target_option + offset) % 2
            response_record(token=participant.token, trial_public_id=a.trial.public_id, choice=choice, rt_ms=500,
                            idempotency_key=new_key())
    source_env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT)}
    restored_name = f"{connection.settings_dict['NAME']}_restored"
    restored_env = {**os.environ, "DATABASE_URL": database_url(restored_name), "DJANGO_MEDIA_ROOT": str(tmp_path / "media")}
    with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{restored_name}"')
        admin.execute(f'CREATE DATABASE "{restored_name}"')
    try:
        subprocess.run(["scripts/backup.sh", str(tmp_path / "backup")], cwd=ROOT, env=source_env, check=True, capture_output=True)
        subprocess.run(["scripts/restore.sh", str(tmp_path / "backup")], cwd=ROOT, env=restored_env, check=True, capture_output=True)

        assert report(restored_env, live_survey.slug) == report(source_env, live_survey.slug)
        restored_images = {p.relative_to(tmp_path / "media") for p in (tmp_path / "media").rglob("*.png")}
        original_images = {p.relative_to(settings.MEDIA_ROOT) for p in Path(settings.MEDIA_ROOT).rglob("*.png")}
        assert restored_images == original_images
    finally:
        with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{restored_name}" WITH (FORCE)')
