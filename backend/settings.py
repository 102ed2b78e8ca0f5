"""One settings file, read top to bottom; every knob comes from the environment.

With nothing set, the project runs embedded: SQLite and a server-free Celery broker
(kombu's filesystem transport). Set DATABASE_URL and CELERY_BROKER_URL for PostgreSQL
and Redis.
"""
from pathlib import Path

import environ

from backend.secret_checks import secrets_refuse_weak

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# With DEBUG off the key (and the database password, below) must be real secrets: backend/secret_checks.py.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-insecure-key" if DEBUG else "")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "teams",
    "operations",  # long-running work handed to a worker (operation runs), below the apps that register it
    "iri_worker",
    "surveys",
    "results",
    "backend",  # project-wide management commands (demo)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "backend.null_characters.refuse_null_characters_in_url",
    "backend.static_files.source_maps_only_in_debug",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Participant API (/api/p/…): straight to the view, past sessions, auth, messages and CSRF they never use.
    "surveys.middleware.participant_api_fast_path",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backend.urls"
WSGI_APPLICATION = "backend.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
# A kept connection is checked before a request reuses it, so a restarted PostgreSQL costs no failed request.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker process writes while the web process reads: wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django turns psycopg's prepared statements off by default. With a threshold, statements run on a
    # server-side-binding cursor are prepared once per connection (the survey answer path, prepared on first use;
    # ORM queries use client-side binding and are unaffected). Set DJANGO_DB_PREPARE_THRESHOLD= (empty) behind a
    # pooler in transaction mode (pgbouncer), which cannot keep prepared statements.
    threshold = env("DJANGO_DB_PREPARE_THRESHOLD", default="5")
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = int(threshold) if threshold else None
if not DEBUG:
    # Refuses (ImproperlyConfigured, saying how to make one) an empty, placeholder or short key or database password.
    secrets_refuse_weak(secret_key=SECRET_KEY, database_password=DATABASES["default"].get("PASSWORD"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=VAR_DIR / "static")
# The crowdworker app is built by npm into frontend/dist and served as plain static files.
STATICFILES_DIRS = [BASE_DIR / "frontend" / "dist"]
WHITENOISE_USE_FINDERS = True
MEDIA_URL = "/media/"
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", default=VAR_DIR / "media")

# Uploads: photos only, and not huge.
IRI_MAX_UPLOAD_BYTES = env.int("IRI_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
IRI_MAX_CHECKPOINT_BYTES = env.int("IRI_MAX_CHECKPOINT_BYTES", default=1024 * 1024 * 1024)
# A RUNNING chunk whose worker sent no heartbeat for this long is taken over by another worker.
IRI_CHUNK_STALE_S = env.int("IRI_CHUNK_STALE_S", default=120)
IRI_TORCH_THREADS = env.int("IRI_TORCH_THREADS", default=0)  # 0 = torch's default (one per core)
# glibc keeps freed blocks for the next optimisation step instead of unmapping them (up to 3x the CPU steps/s at
# cheap layers while the host's page faults are slow, measured in bench/engine.py); false leaves the allocator as it is.
IRI_KEEP_FREED_MEMORY = env.bool("IRI_KEEP_FREED_MEMORY", default=True)
DATA_UPLOAD_MAX_MEMORY_SIZE = IRI_MAX_UPLOAD_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = IRI_MAX_UPLOAD_BYTES + 1024 * 1024

# Every audited service refuses a write that does not say who does it (teams.services.audit_record). Only a test's
# setup, which builds the world that nobody did, may leave the actor out (tests/conftest.py): not an environment knob.
AUDIT_ACTOR_REQUIRED = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous request gets 401 with WWW-Authenticate (session auth alone would say 403).
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Logged in and a member of a team; what one may do to an object is checked by teams.selectors.
    "DEFAULT_PERMISSION_CLASSES": ["teams.permissions.TeamMember"],
    "DEFAULT_PARSER_CLASSES": [
        "backend.null_characters.NullRefusingJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "backend.schema.ApiSchema",
    # How many proxies in front of the app append to X-Forwarded-For. 0: the header is ignored and the client
    # is REMOTE_ADDR, so a client cannot pick the IP its per-IP rate limit counts against.
    "NUM_PROXIES": env.int("DJANGO_TRUSTED_PROXIES", default=0),
    "EXCEPTION_HANDLER": "backend.exceptions.api_exception_handler",
    # Only the open participant endpoints are limited; see backend/throttles.py.
    "DEFAULT_THROTTLE_CLASSES": ["backend.throttles.EnrollRateThrottle", "backend.throttles.ParticipantRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "participant_enroll": env("RATE_LIMIT_ENROLL", default="60/min"),
        "participant_session": env("RATE_LIMIT_SESSION", default="600/min"),
    },
}
# Rate-limit counters; point CACHE_URL at Redis (redis://host:6379/1) so every web process shares them.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
SPECTACULAR_SETTINGS = {"TITLE": "IRI alignment platform API", "VERSION": "0.1.0"}

# Celery. IRI jobs go to the "gpu" queue; GPU workers consume only that queue.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://localhost//")
BROKER_DIR = env.path("CELERY_BROKER_DIR", default=VAR_DIR / "broker")
if CELERY_BROKER_URL.startswith("filesystem://"):
    Path(BROKER_DIR).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "control_folder": str(Path(BROKER_DIR) / "control"),
    }
elif CELERY_BROKER_URL.startswith("redis"):
    # Several deployments (or test runs) can share one Redis: each prefixes its queues' keys with its own name.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": env("CELERY_BROKER_KEY_PREFIX", default="")}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ROUTES = {"iri_worker.tasks.*": {"queue": "gpu"}}
# Expired survey reservations are also released on every enrollment; beat makes it periodic (celery -A backend beat).
# External IDs past a survey's retention period are dropped hourly.
CELERY_BEAT_SCHEDULE = {
    "surveys-release-reservations": {"task": "surveys.tasks.reservations_release_expired_task", "schedule": 60.0},
    "surveys-expire-participant-ids": {"task": "surveys.tasks.participant_ids_expire_task", "schedule": 3600.0},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Fail fast when the broker is down instead of hanging a web request.
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=3.0)

# Production hardening: on whenever DEBUG is off (`manage.py check --deploy` stays clean).
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes speak plain HTTP inside the stack
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"  # but survey pages: MTurk may frame them (surveys.apis.framed_by_mturk_only)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# The public address of the site, for survey links printed by commands.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000")

# Prolific from the admin (surveys/prolific.py): an API token from Prolific's settings page; empty = off.
PROLIFIC_API_TOKEN = env("PROLIFIC_API_TOKEN", default="")
PROLIFIC_API_URL = env("PROLIFIC_API_URL", default="https://api.prolific.com/api/v1/")
# The Prolific workspace's currency (rewards are in its pence or cents; the planner and the draft form use its
# minimum and recommended hourly pay) and the project new drafts go to (empty: Prolific's first project).
PROLIFIC_CURRENCY = env("PROLIFIC_CURRENCY", default="GBP").upper()
if PROLIFIC_CURRENCY not in ("GBP", "USD"):
    raise environ.ImproperlyConfigured(f"PROLIFIC_CURRENCY must be GBP or USD, not {PROLIFIC_CURRENCY!r}")
PROLIFIC_PROJECT_ID = env("PROLIFIC_PROJECT_ID", default="")
# Retries when Prolific is busy (429) or failing (5xx): per request at most PROLIFIC_RETRY_TOTAL retries, waits
# growing from PROLIFIC_RETRY_BACKOFF_S, each (and any Retry-After) at most PROLIFIC_RETRY_WAIT_MAX_S; background
# tasks (pause, places) then retry up to PROLIFIC_TASK_RETRIES times, waits up to PROLIFIC_TASK_BACKOFF_MAX_S.
PROLIFIC_RETRY_TOTAL = env.int("PROLIFIC_RETRY_TOTAL", default=4)
PROLIFIC_RETRY_BACKOFF_S = env.float("PROLIFIC_RETRY_BACKOFF_S", default=1.0)
PROLIFIC_RETRY_WAIT_MAX_S = env.float("PROLIFIC_RETRY_WAIT_MAX_S", default=20.0)
PROLIFIC_TASK_RETRIES = env.int("PROLIFIC_TASK_RETRIES", default=10)
PROLIFIC_TASK_BACKOFF_S = env.int("PROLIFIC_TASK_BACKOFF_S", default=30)
PROLIFIC_TASK_BACKOFF_MAX_S = env.int("PROLIFIC_TASK_BACKOFF_MAX_S", default=1800)

# Logs: JSON lines (with job/chunk/participant ids where known) unless DJANGO_LOG_FORMAT=plain.
LOG_FORMAT = env("DJANGO_LOG_FORMAT", default="plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "backend.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
}
# Celery workers log through the same handlers instead of replacing them.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
