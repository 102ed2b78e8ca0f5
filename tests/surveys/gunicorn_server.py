"""A real gunicorn server (the README's recommended configuration) on the test database, for load and bots."""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from django.conf import settings

from tests.conftest import database_url, free_port

# The recommended configuration itself (sync workers, backlog, CONN_MAX_AGE); tests only choose the worker count.
GUNICORN_ARGS = ["-c", str(Path(settings.BASE_DIR) / "gunicorn.conf.py")]


def start(*, workers: int = 8, port: int | None = None, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DJANGO_CONN_MAX_AGE": "60",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        **(env or {}),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    # The log goes to a file, not a pipe: a pipe nobody reads fills up when many requests fail and stalls the server.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [str(gunicorn), "backend.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", str(workers), *GUNICORN_ARGS],
        cwd=settings.BASE_DIR, env=full_env, stdout=subprocess.DEVNULL, stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(url + "/api/p/sessions/x/next", timeout=2)
            return proc, url
        except requests.RequestException:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                raise RuntimeError("gunicorn did not start: " + log.read().decode()[-2000:])
            time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
