"""Secrets: generation, digests and constant-time comparison. Pure; no models, DRF or Celery.

- Signal tokens: 32 random bytes as 64 lowercase hex characters; only their SHA-256 digest is
  stored. A keyed or slow hash buys nothing here: the token has 256 bits of entropy, so the
  digest cannot be reversed by guessing, and a fast digest keeps lookup a plain index probe.
- API keys: ``<prefix><43 url-safe chars>`` (256 bits); stored as a SHA-256 digest plus a short
  visible prefix for display, like GitHub or Stripe keys.
- Webhook secrets: the Standard Webhooks form, ``whsec_`` + base64 of 32 random bytes; these must
  be recoverable to sign, so they are stored as they are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

SIGNAL_TOKEN_RE = re.compile(r"^[0-9a-f]{64}$")
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


def new_api_key(prefix: str) -> tuple[str, str]:
    """Return ``(raw_key, visible_prefix)``; only the digest of ``raw_key`` is stored."""
    raw = prefix + secrets.token_urlsafe(32)
    return raw, raw[: len(prefix) + VISIBLE_PREFIX_CHARS]


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
