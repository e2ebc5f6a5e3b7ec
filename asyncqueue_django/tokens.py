"""Secrets: generation, digests and constant-time comparison. Pure; no models, DRF or Celery.

- Signal tokens: 32 random bytes as 64 lowercase hex characters; only their SHA-256 digest is
  stored. A keyed or slow hash buys nothing here: the token has 256 bits of entropy, so the
  digest cannot be reversed by guessing, and a fast digest keeps lookup a plain index probe.
- API keys: ``<prefix><43 url-safe chars>`` (256 bits); stored as a SHA-256 digest plus a short
  visible prefix for display, like GitHub or Stripe keys.
- Token Vault ids: ``tok_`` + 24 url-safe characters; an id, not a secret (the value it names
  is encrypted at rest, see ``vault.py``).
- Provider callback ids: 64 lowercase hex characters, an HMAC-SHA256 of the task id under a key
  the caller passes (derived from ``SECRET_KEY``), so the id is never stored: the task keeps
  only its SHA-256 digest for lookup, and the worker derives the id again to build the URL.
- Webhook secrets: the Standard Webhooks form, ``whsec_`` + base64 of 32 random bytes; these must
  be recoverable to sign, so they are stored as they are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any

SIGNAL_TOKEN_RE = re.compile(r"^[0-9a-f]{64}$")
#: A header value of this shape refers to a Token Vault entry (ids the vault issues are
#: ``tok_`` and 24 url-safe characters); one that names no live token of the team is refused,
#: so a mistyped id is never sent to a target as a literal.
VAULT_TOKEN_RE = re.compile(r"^tok_[A-Za-z0-9_-]{1,36}$")
VAULT_TOKEN_PREFIX = "tok_"
VISIBLE_PREFIX_CHARS = 8  # characters of the random part shown next to the key prefix


def digest(secret: str) -> str:
    """SHA-256 hex digest of a high-entropy secret (what the database stores)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def new_signal_token() -> str:
    return secrets.token_hex(32)


def is_signal_token(value: str) -> bool:
    return bool(SIGNAL_TOKEN_RE.fullmatch(value))


#: The placeholder a task's body, payload strings or target URL may carry; each call puts the
#: task's provider callback URL in its place.
CALLBACK_PLACEHOLDER = "{asyncqueue_callback_url}"


def has_placeholder(value: Any) -> bool:
    """Whether ``value`` (a string, or any JSON value: its strings are searched) carries the
    ``{asyncqueue_callback_url}`` placeholder."""
    if isinstance(value, str):
        return CALLBACK_PLACEHOLDER in value
    if isinstance(value, dict):
        return any(has_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(has_placeholder(v) for v in value)
    return False


def callback_id(key: bytes, task_id: str) -> str:
    """The one-time provider callback id of the task ``task_id``: HMAC-SHA256 under ``key``,
    64 lowercase hex characters. Only its :func:`digest` is stored."""
    return hmac.new(key, f"asyncqueue.callback:{task_id}".encode(), hashlib.sha256).hexdigest()


def new_api_key(prefix: str, mode: str = "live") -> tuple[str, str]:
    """Return ``(raw_key, visible_prefix)``; only the digest of ``raw_key`` is stored.

    The key reads ``<prefix><mode>_<random>`` (``aq_live_…``, ``aq_test_…``); the visible
    prefix includes the mode, so a listing tells test keys from live ones."""
    head = f"{prefix}{mode}_"
    raw = head + secrets.token_urlsafe(32)
    return raw, raw[: len(head) + VISIBLE_PREFIX_CHARS]


def new_vault_token_id() -> str:
    return VAULT_TOKEN_PREFIX + secrets.token_urlsafe(18)


def is_vault_token_id(value: str) -> bool:
    """Whether a header value is exactly a Token Vault id (and so refers to a secret)."""
    return value.startswith(VAULT_TOKEN_PREFIX) and bool(VAULT_TOKEN_RE.fullmatch(value))


def vault_references(headers: dict[str, str]) -> dict[str, str]:
    """``{header name: token id}`` for the headers whose value is a Token Vault id."""
    return {name: value for name, value in headers.items() if is_vault_token_id(value)}


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
