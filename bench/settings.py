"""Django settings for the benchmarks (modelled on ``tests/settings.py``).

``DATABASE_URL`` and ``CELERY_BROKER_URL`` choose the services; ``python -m bench`` sets them
for each backend (``pg``: PostgreSQL + Redis, ``embedded``: SQLite + the embedded SQLite
broker). Everything the benchmarks publish goes to the ``aqbench`` queue (or ``BENCH_QUEUE``),
which only the benchmark's own workers consume, so a broker shared with a test run is safe.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url

from asyncqueue_django.conf import SETTINGS as _KNOWN_SETTINGS

# BENCH_QUEUE: two runs on one broker (e.g. concurrent smoke tests) must not share a queue.
QUEUE = os.environ.get("BENCH_QUEUE") or "aqbench"
STATE_DIR = Path(os.environ.get("BENCH_STATE_DIR") or Path(tempfile.gettempdir()) / "aqbench")
STATE_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = "bench-only-not-secret"
DEBUG = False  # DEBUG keeps every query in memory: never on in a benchmark
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.urls"
WSGI_APPLICATION = "bench.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "django_celery_beat",
    "drf_spectacular_sidecar",
    "asyncqueue_django",
    "bench.floor",
]

# What an API-only production project runs; the floor view passes through the same stack.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{STATE_DIR / 'bench.sqlite3'}",
        conn_max_age=int(os.environ.get("BENCH_CONN_MAX_AGE") or 60),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = (
    os.environ.get("CELERY_BROKER_URL") or f"sqlite:///{STATE_DIR / 'broker.sqlite3'}"
)
if CELERY_BROKER_URL.startswith("sqlite:"):
    CELERY_BROKER_TRANSPORT = "asyncqueue_django.embedded_broker:Transport"
CELERY_TASK_DEFAULT_QUEUE = QUEUE
CELERY_TASK_ALWAYS_EAGER = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_QUEUE_MAX_PRIORITY = 10
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "priority_steps": list(range(10)),
    "queue_order_strategy": "priority",
}
# The production recommendations of the README and the example project.
CELERY_DB_REUSE_MAX = 200
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True

_asyncqueue = {
    # Targets are local servers on 127.0.0.1.
    "ALLOW_PRIVATE_TARGETS": True,
    # The benchmarks hit the API far faster than a per-team or per-IP limit allows.
    "SIGNAL_RATE_LIMIT": None,
    "RATE_LIMIT": None,
    # Webhook deliveries go to the benchmark's queue, which its worker consumes.
    "WEBHOOK_QUEUE": QUEUE,
    # One attempt: a webhook benchmark never waits for a re-delivery.
    "WEBHOOK_RETRY_SCHEDULE": [],
    # DEBUG is off, so the Token Vault needs a key (asyncqueue.W003). Benchmarks only.
    "VAULT_KEYS": ["fKl9qxDLID6dZx1d4SRa_687V7_AFfq-5NCBDwf1w7s="],
}
# Only keys this version of the app knows (features land while the suite is in use).
ASYNCQUEUE = {k: v for k, v in _asyncqueue.items() if k in _KNOWN_SETTINGS}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # INFO would print a line per task in every process; the benchmarks measure the work.
    "loggers": {"asyncqueue_django": {"handlers": ["console"], "level": "WARNING"}},
}
SILENCED_SYSTEM_CHECKS = ["asyncqueue.W001"]  # private targets are allowed on purpose
