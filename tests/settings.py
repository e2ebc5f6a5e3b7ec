"""Settings for the test suite.

``DATABASE_URL`` (default: a SQLite file) and ``CELERY_BROKER_URL`` (default: the embedded
SQLite broker) choose the real services the tests use; CI runs the suite twice, once on the
defaults and once on PostgreSQL + Redis. A worker subprocess started by the tests gets
``ASYNCQUEUE_TEST_DB_NAME`` so that it opens the test database, not the main one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url

from asyncqueue_django.beat import beat_schedule

STATE_DIR = Path(os.environ.get("ASYNCQUEUE_TEST_STATE_DIR") or tempfile.gettempdir()) / (
    f"asyncqueue-tests-{os.environ.get('ASYNCQUEUE_TEST_RUN_ID', os.getpid())}"
)
STATE_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "django_celery_beat",
    "drf_spectacular_sidecar",  # Swagger UI's files for /v1/docs
    "asyncqueue_django",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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

_sqlite_file = STATE_DIR / "test.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{STATE_DIR / 'main.sqlite3'}",
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so a worker process can open the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(_sqlite_file)}
if os.environ.get("ASYNCQUEUE_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["ASYNCQUEUE_TEST_DB_NAME"]

CELERY_BROKER_URL = (
    os.environ.get("CELERY_BROKER_URL") or f"sqlite:///{STATE_DIR / 'broker.sqlite3'}"
)
if CELERY_BROKER_URL.startswith("sqlite:"):
    # The embedded broker: a SQLite file, no service to run.
    CELERY_BROKER_TRANSPORT = "asyncqueue_django.embedded_broker:Transport"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = False  # never: tests run a real worker
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_QUEUE_MAX_PRIORITY = 10
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "priority_steps": list(range(10)),
    "queue_order_strategy": "priority",
}
CELERY_DB_REUSE_MAX = 200
# The sweeps every second, so end-to-end expiry tests finish quickly.
CELERY_BEAT_SCHEDULE = beat_schedule(sweep_interval=1.0, recovery_interval=5.0)

ASYNCQUEUE = {
    # Callback targets in the tests are local HTTP servers on 127.0.0.1.
    "ALLOW_PRIVATE_TARGETS": True,
    # Short, exact retry delays keep end-to-end retry tests fast; the production sequence
    # (1, 2, 4 … s with jitter) is tested on the pure backoff functions.
    "RETRY_BASE_DELAY": 0.2,
    "RETRY_JITTER": 0,
    # The same for webhook re-deliveries (the worker subprocess reads this file too).
    "WEBHOOK_RETRY_SCHEDULE": [0.2, 0.2, 0.2],
    # Provider callback URLs: what the test client's requests come to.
    "PUBLIC_BASE_URL": "http://testserver",
    # DEBUG is off, so the Token Vault needs a real key (asyncqueue.W003). Tests only.
    "VAULT_KEYS": ["FC0cMiX2-wBCZOZpPUPg5mby7sqAlpI-p-0hX21NVC8="],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"asyncqueue_django": {"handlers": ["console"], "level": "INFO"}},
}
SILENCED_SYSTEM_CHECKS = ["asyncqueue.W001"]  # tests allow private targets on purpose

# A test can start a worker with other ASYNCQUEUE values (e.g. short leases for crash tests):
# worker_factory(ASYNCQUEUE_TEST_OVERRIDES='{"LEASE_MARGIN": 1}').
if os.environ.get("ASYNCQUEUE_TEST_OVERRIDES"):
    import json as _json

    ASYNCQUEUE = {**ASYNCQUEUE, **_json.loads(os.environ["ASYNCQUEUE_TEST_OVERRIDES"])}

# --- The example project's demo app (tests/test_demo.py, tests/test_browser.py) -------------
# It lives next to example_project/manage.py and is imported as ``demo``, as it is there; the
# path is added here so the worker subprocess, which loads these settings too, finds it.
# The DEMO_* settings are set per test (the demo reads them when used).
import sys  # noqa: E402

_EXAMPLE_PROJECT = str(Path(__file__).resolve().parent.parent / "example_project")
if _EXAMPLE_PROJECT not in sys.path:
    sys.path.append(_EXAMPLE_PROJECT)
INSTALLED_APPS += ["django.contrib.staticfiles", "demo"]
# live_server serves static files, so it needs a STATIC_URL; with staticfiles installed it
# serves the admin's CSS and JavaScript to the browser test as runserver would.
STATIC_URL = "static/"
# --- end of the demo app ----------------------------------------------------------------------
