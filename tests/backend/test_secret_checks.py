"""With DEBUG off the settings refuse secrets anyone could know or guess, and say how to make a real one."""
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from backend.secret_checks import secret_weakness

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = secrets.token_urlsafe(50)
GOOD_PASSWORD = secrets.token_urlsafe(24)
HOW_TO_MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(50))"'


def settings_start(**variables: str) -> subprocess.CompletedProcess:
    """Load the settings in a fresh interpreter with these variables instead of ours (DJANGO_*, DATABASE_URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_") and k != "DATABASE_URL"}
    env |= {"DJANGO_SETTINGS_MODULE": "backend.settings", **variables}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True,
    )


def production(*, key: str = GOOD_KEY, database_url: str = f"postgres://iri:{GOOD_PASSWORD}@db:5432/iri") -> dict:
    return {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": key, "DATABASE_URL": database_url}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "is empty"),
        ("change-me", "is a placeholder"),
        ("django-insecure-" + GOOD_KEY, "is a placeholder"),
        ("change-me-" + GOOD_KEY, "is a placeholder"),
        ("dev-only-insecure-key", "is a placeholder"),
        (GOOD_KEY[:49], "has 49 characters, fewer than 50"),
        ("abcd" * 20, "has fewer than 5 different characters"),
        (GOOD_KEY, None),
    ],
    # named, not shown: the keys are new each run, and xdist's workers must collect the same test names
    ids=["empty", "placeholder", "django-insecure-", "change-me-", "dev-only", "49 characters", "4 characters", "good"],
)
def test_a_secret_key_is_long_varied_and_no_placeholder(value, why):
    assert secret_weakness(value, min_length=50) == why


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("iri", "is a placeholder"),
        ("postgres", "is a placeholder"),
        ("password", "is a placeholder"),
        ("change-me", "is a placeholder"),
        ("Zq8-x1Lm_T4kW9", "has 14 characters, fewer than 16"),
        (GOOD_PASSWORD, None),
    ],
    ids=["iri", "postgres", "password", "change-me", "14 characters", "good"],
)
def test_a_database_password_is_long_varied_and_no_placeholder(value, why):
    assert secret_weakness(value, min_length=16) == why


def test_production_settings_start_with_real_secrets():
    run = settings_start(**production())
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("key", ["", "change-me", GOOD_KEY[:40]], ids=["empty", "placeholder", "short"])
def test_production_refuses_a_missing_placeholder_or_short_secret_key_and_says_how_to_make_one(key):
    run = settings_start(**production(key=key))

    assert run.returncode != 0
    assert re.search(r"ImproperlyConfigured: DJANGO_SECRET_KEY (is empty|is a placeholder|has 40 char)", run.stderr)
    assert HOW_TO_MAKE_ONE in run.stderr and "make env" in run.stderr
    assert not key or key not in run.stderr.replace("ImproperlyConfigured", ""), "the message repeats the secret"


@pytest.mark.parametrize("password", ["iri", "postgres", "short-but-random"[:12]])
def test_production_refuses_a_placeholder_or_short_database_password(password):
    run = settings_start(**production(database_url=f"postgres://iri:{password}@db:5432/iri"))

    assert run.returncode != 0
    assert "ImproperlyConfigured: The database password in DATABASE_URL" in run.stderr
    assert HOW_TO_MAKE_ONE in run.stderr and "POSTGRES_PASSWORD" in run.stderr


@pytest.mark.parametrize(
    "database_url", ["sqlite:////tmp/iri-secret-check.sqlite3", "postgres://postgres@127.0.0.1:5432/iri"],
)
def test_a_database_url_without_a_password_is_left_alone(database_url):
    """SQLite, or PostgreSQL through trust/peer authentication or PGPASSWORD: no password in the URL to guess."""
    run = settings_start(**production(database_url=database_url))
    assert run.returncode == 0, run.stderr


def test_development_keeps_its_built_in_key():
    run = settings_start(DJANGO_DEBUG="true", DJANGO_SECRET_KEY="change-me", DATABASE_URL="postgres://iri:iri@db/iri")
    assert run.returncode == 0, run.stderr


def test_a_container_of_the_image_runs_with_debug_off_unless_told_otherwise():
    final_stage = (ROOT / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    assert re.search(r"^ENV .*\bDJANGO_DEBUG=false\b", final_stage, re.MULTILINE)


def test_the_image_collects_static_files_without_secrets_though_debug_is_off_around_it():
    """The Dockerfile's build-time collectstatic runs with throwaway values under the image's DJANGO_DEBUG=false;
    the secret checks must not refuse them."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    line = next(line for line in lines if line.startswith("RUN") and "collectstatic" in line)
    assignments = dict(re.findall(r"(\w+)=(\S+)", line.split("python", 1)[0]))

    run = settings_start(**{"DJANGO_DEBUG": "false", "DATABASE_URL": "sqlite:////tmp/iri-build.sqlite3", **assignments})

    assert run.returncode == 0, run.stderr
