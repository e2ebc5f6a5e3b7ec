"""Signing and verifying webhooks and callbacks. Pure: no models, DRF or Celery.

Every outbound request (callbacks to ``targetUrl`` and onComplete webhooks) carries two
signatures made with the team's webhook secret(s), so receivers can use whichever they prefer:

- ``X-AsyncQueue-Signature: t=<unix>,v1=<hex>`` (the hosted AsyncQueue format), where ``hex`` is
  HMAC-SHA256 of ``"{t}.{raw body}"`` keyed with the secret string exactly as shown
  (``whsec_…``, UTF-8), as AsyncQueue's own verification snippets do;
- Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64>``,
  where the signature is HMAC-SHA256 of ``"{id}.{timestamp}.{raw body}"`` keyed with the
  base64-decoded part of the secret after ``whsec_`` (what the official libraries expect).

During a secret rotation both the new and the previous secret sign: the AsyncQueue header then
carries one ``v1=`` per secret (comma-separated) and ``webhook-signature`` one ``v1,…`` per
secret (space-separated). A receiver holding either secret verifies.

:func:`verify` is the receiving side: constant-time comparison, a timestamp tolerance against
replays, and it fails closed on anything missing, malformed, too old or too new.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping, Sequence

SECRET_PREFIX = "whsec_"
ASYNCQUEUE_HEADER = "X-AsyncQueue-Signature"
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"

#: Seconds a signature's timestamp may differ from the receiver's clock (either way).
DEFAULT_TOLERANCE = 300

# Bounds on what a receiver parses: header values longer than this are refused unread.
MAX_HEADER_LENGTH = 4096
MAX_SIGNATURES = 16
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_HEX_RE = re.compile(r"[0-9a-f]{64}")


class SignatureError(Exception):
    """The request does not carry a valid signature (base class of the specific reasons)."""


class MissingSignature(SignatureError):
    """Neither header format is present (completely)."""


class MalformedSignature(SignatureError):
    """A signature header is present but cannot be parsed."""


class TimestampOutOfRange(SignatureError):
    """The signed timestamp is further from now than the tolerance (a replay, or a bad clock)."""


class SignatureMismatch(SignatureError):
    """The header is well formed, but no signature matches any of the receiver's secrets."""


# --------------------------------------------------------------------------------------------
# Keys and signatures
# --------------------------------------------------------------------------------------------


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64-decoded, after ``whsec_``.

    Raises ``ValueError`` for a secret that is not base64 or is empty (a configuration error,
    not a bad request).
    """
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not base64 after 'whsec_'") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def asyncqueue_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"{timestamp}.{body}"`` keyed with the secret string (UTF-8)."""
    if not secret:
        raise ValueError("webhook secret is empty")
    message = f"{timestamp}.".encode("ascii") + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Base64 HMAC-SHA256 of ``"{msg_id}.{timestamp}.{body}"`` (Standard Webhooks ``v1``)."""
    message = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign(
    secrets: Sequence[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The signature headers of one outbound request, signed with every secret in ``secrets``.

    ``msg_id`` is the Standard Webhooks message id: stable across retries of the same event
    (receivers use it to de-duplicate); ``timestamp`` defaults to now (Unix seconds).
    """
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    t = int(time.time()) if timestamp is None else int(timestamp)
    hexes = ",".join(f"v1={asyncqueue_signature(s, t, body)}" for s in secrets)
    standards = " ".join(f"v1,{standard_signature(s, msg_id, t, body)}" for s in secrets)
    return {
        ASYNCQUEUE_HEADER: f"t={t},{hexes}",
        WEBHOOK_ID_HEADER: msg_id,
        WEBHOOK_TIMESTAMP_HEADER: str(t),
        WEBHOOK_SIGNATURE_HEADER: standards,
    }


# --------------------------------------------------------------------------------------------
# Verification (the receiving side)
# --------------------------------------------------------------------------------------------


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _check_timestamp(raw: str, now: float, tolerance: float) -> int:
    value = raw.strip()
    if not _TIMESTAMP_RE.fullmatch(value):
        raise MalformedSignature("signature timestamp is not a Unix time in seconds")
    timestamp = int(value)
    if timestamp < now - tolerance:
        raise TimestampOutOfRange("signature timestamp is too old")
    if timestamp > now + tolerance:
        raise TimestampOutOfRange("signature timestamp is too new")
    return timestamp


def _any_equal(expected: Iterable[str], received: Sequence[str]) -> bool:
    """Whether any received value equals any expected one. Every pair is compared (in
    constant time), so the time taken does not say which secret or position matched."""
    found = False
    for want in expected:
        for got in received:
            found |= hmac.compare_digest(want.encode("utf-8"), got.encode("utf-8"))
    return found


def _verify_standard(
    body: bytes, h: dict[str, str], secrets: Sequence[str], now: float, tolerance: float
) -> None:
    msg_id = h[WEBHOOK_ID_HEADER]
    if not msg_id or len(msg_id) > 256 or any(c.isspace() for c in msg_id):
        raise MalformedSignature("webhook-id is empty or malformed")
    timestamp = _check_timestamp(h[WEBHOOK_TIMESTAMP_HEADER], now, tolerance)
    received: list[str] = []
    for item in h[WEBHOOK_SIGNATURE_HEADER].split():
        version, sep, value = item.partition(",")
        if not sep or not value:
            raise MalformedSignature("webhook-signature entries must look like 'v1,<base64>'")
        if version == "v1":  # other versions (e.g. v1a, asymmetric) are not ours: skipped
            received.append(value)
    if not received:
        raise MalformedSignature("webhook-signature has no v1 signature")
    if len(received) > MAX_SIGNATURES:
        raise MalformedSignature("webhook-signature has too many signatures")
    expected = [standard_signature(s, msg_id, timestamp, body) for s in secrets]
    if not _any_equal(expected, received):
        raise SignatureMismatch("no webhook-signature matches")


def _verify_asyncqueue(
    body: bytes, header: str, secrets: Sequence[str], now: float, tolerance: float
) -> None:
    timestamps: list[str] = []
    received: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise MalformedSignature("X-AsyncQueue-Signature entries must look like 'key=value'")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            if not _HEX_RE.fullmatch(value):
                raise MalformedSignature("X-AsyncQueue-Signature v1 is not 64 hex digits")
            received.append(value)
        # Unknown schemes are ignored, so a future v2 does not break old receivers.
    if len(timestamps) != 1:
        raise MalformedSignature("X-AsyncQueue-Signature needs exactly one t=")
    if not received:
        raise MalformedSignature("X-AsyncQueue-Signature has no v1 signature")
    if len(received) > MAX_SIGNATURES:
        raise MalformedSignature("X-AsyncQueue-Signature has too many signatures")
    timestamp = _check_timestamp(timestamps[0], now, tolerance)
    expected = [asyncqueue_signature(s, timestamp, body) for s in secrets]
    if not _any_equal(expected, received):
        raise SignatureMismatch("no X-AsyncQueue-Signature matches")


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check that ``body`` was signed with one of ``secrets``; raise :class:`SignatureError`
    (a subclass naming the reason) if not.

    ``headers`` is any mapping of the request's headers (names in any case; a Django
    ``request.headers`` works). When the three Standard Webhooks headers are present they are
    checked; otherwise ``X-AsyncQueue-Signature`` is. Only the chosen format decides: a bad
    Standard Webhooks signature is not rescued by the other header. ``secrets`` is a list so a
    receiver can hold the old and the new secret during a rotation. Raises ``ValueError`` for
    an empty list or a secret that is not in the ``whsec_<base64>`` form (misconfiguration).
    """
    if isinstance(secrets, str):
        raise TypeError("secrets must be a list of secrets, not one string")
    if not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ValueError("at least one non-empty secret is needed to verify")
    for secret in secrets:
        standard_key(secret)  # a malformed secret is a configuration error: say so loudly
    h = _lower_headers(headers)
    if any(len(h.get(name, "")) > MAX_HEADER_LENGTH for name in _ALL_HEADERS):
        raise MalformedSignature("signature header is too long")
    now = time.time() if now is None else now
    if all(h.get(name) for name in _STANDARD_HEADERS):
        _verify_standard(body, h, secrets, now, tolerance)
    elif h.get(ASYNCQUEUE_HEADER.lower()):
        _verify_asyncqueue(body, h[ASYNCQUEUE_HEADER.lower()], secrets, now, tolerance)
    else:
        raise MissingSignature("no signature headers")


_STANDARD_HEADERS = (WEBHOOK_ID_HEADER, WEBHOOK_TIMESTAMP_HEADER, WEBHOOK_SIGNATURE_HEADER)
_ALL_HEADERS = (*_STANDARD_HEADERS, ASYNCQUEUE_HEADER.lower())
