"""Fixtures shared by the survey tests that drive a real server."""
import pytest
from django.db import connection

from tests.surveys import gunicorn_server


@pytest.fixture
def server(transactional_db):
    """A real gunicorn (gunicorn.conf.py) on the test database; its URL."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run through `make test` (DATABASE_URL)")
    proc, url = gunicorn_server.start(workers=4)
    yield url
    gunicorn_server.stop(proc)
