"""System checks for the ``ASYNCQUEUE`` settings dict (ids ``asyncqueue.E0xx`` / ``W0xx``)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from asyncqueue_django import vault
from asyncqueue_django.conf import SETTINGS
from asyncqueue_django.validators import QUEUE_NAME_RE

MAX_WEBHOOK_RETRIES = 50
MIN_METRICS_TOKEN = 16
MAX_WEBHOOK_RETRY_DELAY = 7 * 86_400
RATE_RE = re.compile(r"^\d+/(s|sec|second|m|min|minute|h|hour|d|day)$")

# Pairs that must be ordered: (smaller, larger).
_ORDERED = [
    ("DEFAULT_TIMEOUT", "MAX_TIMEOUT"),
    ("DEFAULT_MAX_RETRIES", "MAX_RETRIES"),
    ("DEFAULT_MAX_WAIT_TIME", "MAX_WAIT_TIME"),
    ("MAX_STORED_RESPONSE_BYTES", "MAX_RESPONSE_BYTES"),
    ("MAX_BODY_BYTES", "MAX_REQUEST_BYTES"),
]


def public_base_url_problem(value: str) -> str | None:
    """Why ``value`` cannot be ``PUBLIC_BASE_URL`` (an http(s) origin, optionally with a path
    prefix, no query or fragment), or None."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "is not an http(s) URL"
    if parts.query or parts.fragment or value.endswith("/"):
        return "must have no query, fragment or trailing slash"
    return None


def _type_name(t: type | tuple[type, ...]) -> str:
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join("null" if x is type(None) else x.__name__ for x in types)


def _check_value(name: str, value: Any) -> list[CheckMessage]:
    spec = SETTINGS[name]
    key = f"ASYNCQUEUE[{name!r}]"
    # bool is an int subclass: True must not pass as a number, nor 1 as a bool.
    if (isinstance(value, bool) and spec.type is not bool) or not isinstance(value, spec.type):
        return [
            Error(
                f"{key} must be {_type_name(spec.type)}, not {type(value).__name__}.",
                id="asyncqueue.E003",
            )
        ]
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and (
        (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max)
    ):
        bounds = f"{spec.min if spec.min is not None else '-inf'}..{spec.max or 'inf'}"
        return [Error(f"{key} = {value!r} is outside {bounds}.", id="asyncqueue.E004")]
    if name == "QUEUES" and value is not None:
        bad = [q for q in value if not isinstance(q, str) or not QUEUE_NAME_RE.fullmatch(q)]
        if bad or not value:
            return [
                Error(
                    f"{key} must be a non-empty list of queue names matching "
                    f"{QUEUE_NAME_RE.pattern}; bad entries: {bad!r}.",
                    id="asyncqueue.E006",
                )
            ]
    if name == "PUBLIC_BASE_URL" and value is not None:
        problem = public_base_url_problem(value)
        if problem:
            return [Error(f"{key} = {value!r} {problem}.", id="asyncqueue.E013")]
    if (
        name in ("RATE_LIMIT", "SIGNAL_RATE_LIMIT", "CALLBACK_RATE_LIMIT")
        and value is not None
        and not RATE_RE.fullmatch(value)
    ):
        return [
            Error(
                f"{key} = {value!r} is not a rate like '600/min' (s, m, min, h, d).",
                id="asyncqueue.E008",
            )
        ]
    if name == "WEBHOOK_RETRY_SCHEDULE":
        bad = [
            d
            for d in value
            if isinstance(d, bool)
            or not isinstance(d, int | float)
            or not 0 <= d <= MAX_WEBHOOK_RETRY_DELAY
        ]
        if bad or len(value) > MAX_WEBHOOK_RETRIES:
            return [
                Error(
                    f"{key} must be a list of at most {MAX_WEBHOOK_RETRIES} delays in seconds, "
                    f"each 0..{MAX_WEBHOOK_RETRY_DELAY}; bad entries: {bad!r}.",
                    id="asyncqueue.E009",
                )
            ]
    if name == "WEBHOOK_QUEUE" and not QUEUE_NAME_RE.fullmatch(value):
        return [
            Error(
                f"{key} = {value!r} is not a queue name matching {QUEUE_NAME_RE.pattern}.",
                id="asyncqueue.E010",
            )
        ]
    if name == "VAULT_KEYS":
        for index, entry in enumerate(value):
            problem = vault.key_problem(entry)
            if problem:
                # The key itself is never echoed: it is a secret.
                return [
                    Error(
                        f"{key}[{index}] {problem}.",
                        hint='Generate one with: python -c "from cryptography.fernet import '
                        'Fernet; print(Fernet.generate_key().decode())"',
                        id="asyncqueue.E011",
                    )
                ]
    if name == "METRICS_TOKEN" and value is not None and len(value.strip()) < MIN_METRICS_TOKEN:
        return [
            Error(
                f"{key} must be at least {MIN_METRICS_TOKEN} characters (or null).",
                hint="python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                id="asyncqueue.E012",
            )
        ]
    if name in ("ALLOWED_NETWORKS", "TRUSTED_PROXIES"):
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except (TypeError, ValueError):
                return [
                    Error(f"{key} entry {entry!r} is not a CIDR network.", id="asyncqueue.E007")
                ]
    return []


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    user = getattr(settings, "ASYNCQUEUE", {})
    if not isinstance(user, dict):
        return [Error("settings.ASYNCQUEUE must be a dict.", id="asyncqueue.E001")]
    errors: list[CheckMessage] = []
    for name in sorted(set(user) - set(SETTINGS)):
        errors.append(
            Error(
                f"Unknown setting ASYNCQUEUE[{name!r}].",
                hint="See the settings table in the asyncqueue_django README.",
                id="asyncqueue.E002",
            )
        )
    for name in sorted(set(user) & set(SETTINGS)):
        errors.extend(_check_value(name, user[name]))
    if errors:
        return errors
    merged = {name: user.get(name, spec.default) for name, spec in SETTINGS.items()}
    for small, large in _ORDERED:
        if merged[small] > merged[large]:
            errors.append(
                Error(
                    f"ASYNCQUEUE[{small!r}] ({merged[small]}) exceeds "
                    f"ASYNCQUEUE[{large!r}] ({merged[large]}).",
                    id="asyncqueue.E005",
                )
            )
    if "drf_spectacular_sidecar" not in settings.INSTALLED_APPS:
        errors.append(
            Warning(
                "'drf_spectacular_sidecar' is not in INSTALLED_APPS: /v1/docs cannot load "
                "Swagger UI's files (they are served from your static files, not a CDN).",
                hint="Add 'drf_spectacular_sidecar' to INSTALLED_APPS.",
                id="asyncqueue.W002",
            )
        )
    if merged["ALLOW_PRIVATE_TARGETS"] and not settings.DEBUG:
        errors.append(
            Warning(
                "ASYNCQUEUE['ALLOW_PRIVATE_TARGETS'] is on while DEBUG is off: tasks can make "
                "this server call loopback, private and cloud-metadata addresses (SSRF).",
                hint="Turn it off in production.",
                id="asyncqueue.W001",
            )
        )
    return errors


@register(Tags.security)
def check_vault_key(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The Token Vault needs a real key in production: with DEBUG off and no
    ``ASYNCQUEUE['VAULT_KEYS']`` the vault is not started (its endpoints and any task using a
    vault token answer ``503 vault_not_configured``), and this warning says so at start-up. A
    warning, not an error: a deployment that does not use the vault keeps starting after an
    upgrade. (The development key is derived from ``SECRET_KEY`` and only used with DEBUG on.)"""
    user = getattr(settings, "ASYNCQUEUE", {})
    if not isinstance(user, dict) or settings.DEBUG:
        return []
    if user.get("VAULT_KEYS"):
        return []
    return [
        Warning(
            "ASYNCQUEUE['VAULT_KEYS'] is empty while DEBUG is off: the Token Vault has no key "
            "to encrypt secrets with, so it answers 503 until one is set.",
            hint='Add a key: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())" (keep it out of version control).',
            id="asyncqueue.W003",
        )
    ]


@register(Tags.compatibility)
def check_public_base_url(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Provider callback URLs need ``ASYNCQUEUE['PUBLIC_BASE_URL']``: without it a task that
    uses the ``{asyncqueue_callback_url}`` placeholder is refused (503
    ``callback_url_not_configured``), and this warning says so at start-up. A warning, not an
    error: a deployment that does not use the placeholder keeps starting."""
    user = getattr(settings, "ASYNCQUEUE", {})
    if not isinstance(user, dict) or user.get("PUBLIC_BASE_URL") is not None:
        return []
    return [
        Warning(
            "ASYNCQUEUE['PUBLIC_BASE_URL'] is not set: tasks that use the "
            "{asyncqueue_callback_url} placeholder are refused (503), because no provider "
            "could reach their callback URL.",
            hint="Set it to the address providers reach this service at, e.g. "
            "'https://queue.example.com'.",
            id="asyncqueue.W004",
        )
    ]
