"""Settings for the example project: asyncqueue_django wired in exactly as a user would.

Zero-service by default (a SQLite database and the embedded SQLite broker, both under
``example_project/var/``); point it at real services with the environment:

- ``DATABASE_URL``      e.g. ``postgres://user:pass@localhost:5432/asyncqueue``
- ``CELERY_BROKER_URL`` e.g. ``redis://localhost:6379/0`` or ``amqp://guest@localhost//``
  (a ``sqlite:///path`` URL selects the embedded broker)
- ``SECRET_KEY``, ``DEBUG`` (``1``/``0``), ``ALLOWED_HOSTS`` (comma-separated),
  ``CSRF_TRUSTED_ORIGINS`` (comma-separated), ``DATABASE_CONN_MAX_AGE`` (seconds),
  ``ASYNCQUEUE_VAULT_KEYS`` (comma-separated Fernet keys, newest first; needed with DEBUG off).
- ``EXAMPLE_VAR_DIR``   where the SQLite files, the beat schedule and the API key file live
  (default ``example_project/var/``, git-ignored).
- ``ASYNCQUEUE_LOG_LEVEL`` the ``asyncqueue_django`` loggers' level (default ``INFO``;
  ``./dev up`` passes its ``WORKER_LOGLEVEL``, ``WARNING`` unless asked).

The development defaults (a published secret key, ``DEBUG`` on, every host allowed, private
callback targets allowed) are for trying it out on your own machine only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url

from asyncqueue_django.beat import CELERY_BEAT_SCHEDULE as ASYNCQUEUE_BEAT_SCHEDULE

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("EXAMPLE_VAR_DIR") or BASE_DIR / "var").resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


SECRET_KEY = os.environ.get("SECRET_KEY") or "dev-only-insecure-secret-key-change-me"
DEBUG = env_bool("DEBUG", True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["*"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_celery_beat",
    "drf_spectacular_sidecar",  # Swagger UI's files for /v1/docs, served locally
    "asyncqueue_django",
    "demo",  # example_project/demo: the three patterns end to end, see README
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
ASGI_APPLICATION = "example_project.asgi.application"

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
            ]
        },
    }
]

# Database: SQLite under var/ unless DATABASE_URL says otherwise.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE") or 0),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The web server, the worker and beat share one file: WAL lets readers run beside the
    # writer, IMMEDIATE takes the write lock at BEGIN (no upgrade deadlocks), and the timeout
    # makes a writer wait for the lock instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# Celery: every CELERY_* setting below is read by example_project/celery.py.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or f"sqlite:///{VAR_DIR / 'broker.sqlite3'}"
if CELERY_BROKER_URL.startswith("sqlite:"):
    # The embedded broker: a SQLite file, no service to run. kombu refuses import paths inside
    # a broker URL, so the transport class is named in its own setting.
    CELERY_BROKER_TRANSPORT = "asyncqueue_django.embedded_broker:Transport"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {**ASYNCQUEUE_BEAT_SCHEDULE}
# Celery's Django fixup otherwise closes the DB connection around every task; on PostgreSQL
# reusing it took a 200-task burst from ~100/s to ~350/s.
CELERY_DB_REUSE_MAX = 200
# RabbitMQ: queues are declared with x-max-priority 10. Redis: ten priority levels, 0 first.
CELERY_TASK_QUEUE_MAX_PRIORITY = 10
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "priority_steps": list(range(10)),
    "queue_order_strategy": "priority",
}
# One message at a time per worker thread (a message wakes a batch of due tasks), acknowledged
# after the batch ran, so a crashed worker's wake-up is redelivered (RabbitMQ: at once; Redis:
# after the visibility timeout; the recovery sweep covers it anyway). No result backend: each
# outcome is stored in its task row. Run the worker with --pool threads --concurrency 8.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_IGNORE_RESULT = True

ASYNCQUEUE = {
    # Local demos call targets on localhost. Never in production: the system check
    # asyncqueue.W001 warns when this is on with DEBUG off (it is deliberately not silenced).
    "ALLOW_PRIVATE_TARGETS": True,
    # Token Vault keys, newest first (comma-separated in the environment). Empty while DEBUG
    # is on: a development key derived from SECRET_KEY is used. Required with DEBUG off.
    "VAULT_KEYS": env_list("ASYNCQUEUE_VAULT_KEYS", []),
    # Where providers reach this service: its own address (./dev up serves on PORT), unless
    # ASYNCQUEUE_PUBLIC_BASE_URL says otherwise (a tunnel, a public host name).
    "PUBLIC_BASE_URL": os.environ.get("ASYNCQUEUE_PUBLIC_BASE_URL")
    or f"http://127.0.0.1:{os.environ.get('PORT') or 8000}",
}

# The demo app (/demo/). Its client creates tasks with DEMO_API_KEY (./dev up passes the key
# it prints) against DEMO_BASE_URL (default: the origin the request came to), and verifies
# callbacks and webhooks with DEMO_WEBHOOK_SECRETS (default: team DEMO_TEAM's secrets, read from
# the database because the demo runs inside the service's own project).
DEMO_API_KEY = os.environ.get("DEMO_API_KEY", "")
DEMO_BASE_URL = os.environ.get("DEMO_BASE_URL", "")
DEMO_TEAM = "demo"
DEMO_WEBHOOK_SECRETS = env_list("DEMO_WEBHOOK_SECRETS", [])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "[%(asctime)s: %(levelname)s/%(name)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "loggers": {
        # propagate off: the Celery worker also puts a handler on the root logger, and each
        # line should be printed once.
        "asyncqueue_django": {
            "handlers": ["console"],
            "level": os.environ.get("ASYNCQUEUE_LOG_LEVEL", "INFO").upper(),
            "propagate": False,
        },
    },
}
