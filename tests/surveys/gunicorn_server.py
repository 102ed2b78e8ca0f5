"""A real gunicorn server (the README's recommended configuration) on the test database, for load and bots."""
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.conf import settings

from tests.conftest import database_url, free_port

GUNICORN_ARGS = ["--worker-class", "sync", "--backlog", "2048", "--access-logfile", "-" if False else "/dev/null"]


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
    proc = subprocess.Popen(
        [str(gunicorn), "backend.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", str(workers), *GUNICORN_ARGS],
        cwd=settings.BASE_DIR, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
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
                raise RuntimeError("gunicorn did not start: " + proc.stderr.read().decode()[-2000:])
            time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
