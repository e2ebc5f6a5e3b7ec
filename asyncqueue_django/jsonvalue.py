"""JSON values the package stores: strict loading, size, the checks a database would choke on,
and header redaction. Pure: no models, DRF or Celery; shared by the API, the admin, the
commands and the worker.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

MAX_JSON_DEPTH = 64
REDACTED = "[redacted]"
SECRET_HEADER_RE = re.compile(
    r"authorization|cookie|token|secret|passw|key|signature|credential|session|auth",
    re.IGNORECASE,
)


def check_json_value(value: Any, depth: int = 0) -> None:
    """Refuse what a database would choke on later: deep nesting, NUL characters, unpaired
    surrogates and non-finite numbers. Raises ``ValueError`` naming the problem."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("JSON strings must not contain NUL (\\u0000) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("JSON strings must be valid Unicode (unpaired surrogate)") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("JSON numbers must be finite")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_json_value(key, depth + 1)
            check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, depth + 1)


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not allowed. JSON numbers must be finite")


def loads_strict(text: str | bytes) -> Any:
    """Parse JSON text, refusing ``NaN``/``Infinity`` and everything :func:`check_json_value`
    refuses. Raises ``ValueError`` (``RecursionError`` for absurd nesting)."""
    value = json.loads(text, parse_constant=_reject_constant)
    check_json_value(value)
    return value


def dumps_compact(value: Any) -> str:
    """Compact JSON text (no spaces, non-ASCII kept), the form sizes are measured in."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON."""
    return len(dumps_compact(value).encode("utf-8"))


def redact_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Headers with secret-looking values replaced, for storage and display."""
    return {k: (REDACTED if SECRET_HEADER_RE.search(k) else v) for k, v in headers.items()}


def storable_text(value: str) -> str:
    """``value`` as text every database column takes: NUL characters (which PostgreSQL's text
    and jsonb refuse) and unpaired surrogates (which no UTF-8 encoder takes) become U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


#: Marker stored in place of the response headers left out by :func:`storable_headers`.
HEADERS_TRUNCATED = "X-AsyncQueue-Headers-Truncated"


def storable_headers(headers: Mapping[str, Any], limit: int | None = None) -> dict[str, str]:
    """Response headers as they may be stored: names and values made :func:`storable_text`
    (a header line may carry any byte; ``http.client`` decodes them as Latin-1), and at most
    ``limit`` characters of names and values together (a target may send a hundred 64 KiB
    header lines). Headers past the limit are left out, and ``X-AsyncQueue-Headers-Truncated``
    says how many."""
    kept: dict[str, str] = {}
    size = 0
    left_out = 0
    for name, value in headers.items():
        k, v = storable_text(str(name)), storable_text(str(value))
        size += len(k) + len(v)
        if limit is not None and size > limit:
            left_out += 1
            continue
        kept[k] = v
    if left_out:
        kept[HEADERS_TRUNCATED] = f"{left_out} header(s) left out: over {limit} characters"
    return kept
