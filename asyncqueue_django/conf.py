"""Settings: one ``ASYNCQUEUE`` dict in the host's settings, read through ``app_settings``.

Every value is looked up in ``settings.ASYNCQUEUE`` at the moment it is used (never cached at
import time), so ``override_settings(ASYNCQUEUE={...})`` just works. Each setting has a default,
a type and bounds below; ``checks.py`` validates the host's dict against this table and reports
unknown keys, and the README's settings table lists the same rows.

This module imports no models, DRF or Celery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class Setting:
    default: Any
    type: type | tuple[type, ...]
    doc: str
    min: float | None = None
    max: float | None = None


DAY = 86_400

SETTINGS: dict[str, Setting] = {
    # Task creation limits.
    "DEFAULT_TIMEOUT": Setting(30, int, "Per-attempt HTTP timeout (s) when a task gives none.", 1),
    "MAX_TIMEOUT": Setting(300, int, "Largest `timeout` (s) a task may ask for.", 1),
    "DEFAULT_MAX_RETRIES": Setting(3, int, "`maxRetries` when a task gives none.", 0),
    "MAX_RETRIES": Setting(10, int, "Largest `maxRetries` a task may ask for.", 0, 100),
    "DEFAULT_MAX_WAIT_TIME": Setting(DAY, int, "`maxWaitTime` (s) when a task gives none.", 1),
    "MAX_WAIT_TIME": Setting(
        30 * DAY, int, "Largest `maxWaitTime` (s), also the heartbeat cap.", 1
    ),
    "MAX_DELAY": Setting(
        365 * DAY, int, "How far in the future (s) `delayUntil`/`delay` may point.", 1
    ),
    "MAX_BODY_BYTES": Setting(
        1_048_576, int, "Largest `payload`/`body` (encoded bytes) a task may carry.", 1
    ),
    "MAX_METADATA_BYTES": Setting(16_384, int, "Largest `metadata` (encoded bytes).", 0),
    "MAX_REQUEST_BYTES": Setting(
        2_097_152, int, "Largest HTTP request body the API accepts (413 above it).", 1024
    ),
    "MAX_HEADERS": Setting(50, int, "Most `headers` entries a task may carry.", 0),
    "QUEUES": Setting(
        None,
        (list, type(None)),
        "Queue names tasks may use (`null`: any name matching `[A-Za-z0-9_.-]{1,100}`).",
    ),
    "IDEMPOTENCY_TTL": Setting(
        DAY, int, "Seconds an `Idempotency-Key` keeps returning the original task.", 1
    ),
    # Outbound HTTP.
    "ALLOW_PRIVATE_TARGETS": Setting(
        False,
        bool,
        "Allow targets/webhooks on loopback, private and link-local addresses (development only).",
    ),
    "ALLOWED_NETWORKS": Setting(
        [],
        list,
        "CIDR networks exempt from the SSRF guard (e.g. an internal service range).",
    ),
    "MAX_RESPONSE_BYTES": Setting(
        1_048_576, int, "Most bytes read from a target's response; the rest is discarded.", 1024
    ),
    "MAX_STORED_RESPONSE_BYTES": Setting(
        65_536,
        int,
        "Response body kept in `result.body` and attempt history (truncated); also the most "
        "characters of response headers kept.",
        0,
    ),
    "MAX_REDIRECTS": Setting(
        5, int, "Redirects followed per attempt (each hop re-checked).", 0, 20
    ),
    "CONNECT_TIMEOUT": Setting(
        10,
        (int, float),
        "Most seconds one TCP connect (with name resolution) may take, within the attempt's "
        "deadline.",
        0.1,
    ),
    "COMPLETE_ON_CLIENT_ERROR": Setting(
        False,
        bool,
        "A target's 4xx other than 408/425/429 completes the task with that answer as its "
        "`result` (the hosted service's behaviour) instead of failing it.",
    ),
    # Provider callback URLs and provider polling.
    "PUBLIC_BASE_URL": Setting(
        None,
        (str, type(None)),
        "The address providers reach this service at (`https://queue.example.com`): "
        "`{asyncqueue_callback_url}` becomes `<PUBLIC_BASE_URL>/v1/callbacks/<callbackId>`. "
        "`null`: tasks using the placeholder are refused (503, warning `asyncqueue.W004`).",
    ),
    "CALLBACK_RATE_LIMIT": Setting(
        "30/min",
        (str, type(None)),
        "Provider callback requests (`POST /v1/callbacks/…`) per client IP.",
    ),
    "MIN_POLL_INTERVAL": Setting(
        1, int, "Shortest `pollConfig.interval` (s) a task may ask for.", 1, 3600
    ),
    "MAX_POLL_DURATION": Setting(
        DAY, int, "Longest `pollConfig.maxDuration` (s) a task may ask for.", 1
    ),
    # Retries and scheduling.
    "RETRY_BASE_DELAY": Setting(1.0, (int, float), "First retry delay (s) of every backoff.", 0),
    "RETRY_MAX_DELAY": Setting(3600, (int, float), "Upper bound (s) of any retry delay.", 0),
    "RETRY_JITTER": Setting(
        0.1, (int, float), "Jitter as a fraction of the delay (+/-), 0 disables it.", 0, 1
    ),
    "RETRY_AFTER_MAX": Setting(
        3600, int, "Largest `Retry-After` (s) from a target that is honoured.", 0
    ),
    "COUNTDOWN_MAX": Setting(
        60,
        int,
        "Delays up to this many seconds use a Celery countdown; longer ones wait for the sweep.",
        0,
    ),
    "LEASE_MARGIN": Setting(
        30,
        int,
        "Seconds a claim outlives its attempt's longest run (timeout + connect timeout).",
        1,
    ),
    "DISPATCH_GRACE": Setting(
        60, int, "A due task not claimed this long after dispatch is dispatched again.", 1
    ),
    "FLOW_CONTROL_DELAY": Setting(
        0.5,
        (int, float),
        "Seconds a task held back by its `flowControl` parallelism waits before it is tried "
        "again (one held back by `rate` waits exactly until the window lets it start).",
        0.05,
        60,
    ),
    "FLOW_CONTROL_MAX_RATE": Setting(
        1000,
        int,
        "Largest `flowControl.rate` and `flowControl.parallelism` a task may ask for (the "
        "limiter row keeps one start time per allowed start).",
        1,
        100_000,
    ),
    "MAX_SCHEDULES_PER_TEAM": Setting(
        1000,
        int,
        "Most schedules (live and sandbox, paused or not) one team may have; beat loads every "
        "schedule, so one team's runaway client cannot stall the sweeps of all.",
        1,
        1_000_000,
    ),
    "SWEEP_BATCH_SIZE": Setting(500, int, "Rows one sweep batch handles.", 1, 10_000),
    "BATCH_SIZE": Setting(
        16,
        int,
        "Most due tasks (or webhook events) one wake-up message claims and runs at once, each "
        "call with its own deadline; also how many newly due rows share one message.",
        1,
        256,
    ),
    # onComplete webhooks.
    "WEBHOOK_TIMEOUT": Setting(
        10,
        int,
        "Wall-clock limit (s) of one webhook delivery attempt, redirects included.",
        1,
        300,
    ),
    "WEBHOOK_RETRY_SCHEDULE": Setting(
        [5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200],
        list,
        "Delays (s) before each webhook re-delivery (with `RETRY_JITTER`); after the last, "
        "the event is `failed`. `[]`: one attempt only.",
    ),
    "WEBHOOK_SECRET_OVERLAP": Setting(
        DAY, int, "Seconds the previous webhook secret keeps signing after a rotation.", 0
    ),
    "WEBHOOK_QUEUE": Setting("default", str, "Celery queue that webhook deliveries are sent on."),
    # Rate limits (DRF rate strings such as "600/min"; null disables).
    "RATE_LIMIT": Setting(
        "6000/min",
        (str, type(None)),
        "API requests per team (fixed window, counted in the default cache).",
    ),
    "SIGNAL_RATE_LIMIT": Setting(
        "600/min",
        (str, type(None)),
        "Signal and heartbeat requests per client IP (uses the default cache).",
    ),
    "TRUSTED_PROXIES": Setting(
        [],
        list,
        "CIDR networks of your reverse proxies / load balancers. Only a request from one of "
        "them has its client address taken from `X-Forwarded-For` (for per-IP limits); "
        "otherwise it is `REMOTE_ADDR`.",
    ),
    # Identity and secrets.
    "API_KEY_PREFIX": Setting(
        "aq_", str, "Prefix of generated API keys (then `live_` or `test_` and the random part)."
    ),
    "VAULT_KEYS": Setting(
        [],
        list,
        "Fernet keys of the Token Vault, newest first: the first encrypts, all decrypt. Empty: "
        "a key derived from `SECRET_KEY` while `DEBUG` is on; with `DEBUG` off the vault answers "
        "503 (warning `asyncqueue.W003`).",
    ),
    # Observability.
    "METRICS_TOKEN": Setting(
        None,
        (str, type(None)),
        "Bearer token that may read `GET /metrics` (at least 16 characters); `null`: only "
        "logged-in staff users may.",
    ),
    "METRICS_CACHE_SECONDS": Setting(
        10,
        int,
        "Seconds each web process reuses the `/metrics` page it read from the database "
        "(0: read on every scrape).",
        0,
        300,
    ),
}

DEFAULTS: dict[str, Any] = {name: s.default for name, s in SETTINGS.items()}


class AppSettings:
    """Attribute access to the ``ASYNCQUEUE`` dict, falling back to ``DEFAULTS``."""

    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "ASYNCQUEUE", None)
        return value if isinstance(value, dict) else {}

    def __getattr__(self, name: str) -> Any:
        if name not in SETTINGS:
            raise AttributeError(f"Unknown ASYNCQUEUE setting {name!r}")
        return self.user_settings().get(name, SETTINGS[name].default)


app_settings = AppSettings()
