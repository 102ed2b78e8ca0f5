"""bench/survey_load.py's synthetic survey is written in raw SQL, so a new column without a database default breaks
the benchmark before it times anything (it happened: participants' is_rehearsal). This runs its set-up, small, on a
database of its own, against today's migrations."""
import os

import pytest

from bench import survey_load_db

pytestmark = pytest.mark.slow  # runs manage.py migrate in a process of its own


@pytest.fixture
def bench_database(monkeypatch):
    name = f"iri_bench_test_p{os.getpid()}"
    monkeypatch.setattr(survey_load_db, "DB_NAME", name)
    monkeypatch.setattr(survey_load_db, "DB_URL", f"postgres://postgres@127.0.0.1:5432/{name}")
    yield name
    survey_load_db.sh(survey_load_db.PSQL + ["-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {name}"])


def test_the_load_benchmark_builds_its_live_survey_on_todays_schema(bench_database):
    pairs = survey_load_db.setup_database(participants=3, trials=4)

    assert len(pairs) == 12 and len(set(pairs)) == 12  # every (participant token, trial) once
    assert survey_load_db.sql("SELECT status FROM surveys_survey") == "LIVE"
    assert survey_load_db.sql("SELECT count(*) FROM surveys_assignment") == "12"
    assert survey_load_db.sql("SELECT count(*) FROM surveys_slot WHERE participant_id IS NOT NULL") == "3"
    assert survey_load_db.stored_count([]) == 0 and survey_load_db.duplicated_count() == 0
