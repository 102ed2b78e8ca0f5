"""The recommended gunicorn configuration, in one place: the Dockerfile, docker-compose.yml,
tests/surveys/gunicorn_server.py and bench/survey_load.py all start `gunicorn -c gunicorn.conf.py backend.wsgi`
(gunicorn also reads this file by itself when started from the project root). Command-line options override it
(e.g. `--bind`, `-w`).

Why these values (measured with bench/survey_load.py on 2 cores, PostgreSQL on loopback): sync workers, 4 per
core, reach the highest answers/s with the lowest p99; gthread reached similar throughput with a 1.5-2.5x
worse p99 at 200+ connections. Each request is short (a few ms, one SQL statement on the answer path), so a
process per request in flight is the cheapest model; the deep backlog keeps bursts of connections queued in
the kernel instead of refused. Database connections are kept for 60 s (DJANGO_CONN_MAX_AGE), so a worker
reuses its connection and its prepared statements.
"""
import os


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this container may use, not the host's
    except AttributeError:
        return os.cpu_count() or 1


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "sync"
workers = int(os.environ.get("GUNICORN_WORKERS", 4 * _cores()))
backlog = 2048
timeout = 30
# No access log by default: one formatted line per answer costs CPU the answers need; the proxy in front logs.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# Workers inherit the master's environment: keep each database connection (and its prepared statements) 60 s.
os.environ.setdefault("DJANGO_CONN_MAX_AGE", "60")
