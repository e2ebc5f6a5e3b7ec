"""Checks and redaction shared by the API and the worker. Pure: no models, DRF or Celery."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

MAX_JSON_DEPTH = 64
REDACTED = "[redacted]"
SECRET_HEADER_RE = re.compile(
    r"authorization|cookie|token|secret|passw|api[-_]?key|signature|credential|session|auth",
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


def storable_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """Response headers as they may be stored: names and values made :func:`storable_text`
    (a header line may carry any byte; ``http.client`` decodes them as Latin-1)."""
    return {storable_text(str(k)): storable_text(str(v)) for k, v in headers.items()}


#: Characters a header value may not contain: control characters other than horizontal tab,
#: and DEL (RFC 9110 §5.5 allows visible characters, space, tab and obs-text).
_HEADER_VALUE_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as an HTTP header value, or None.

    Header values go on the wire as ISO-8859-1 (Latin-1) bytes, as HTTP/1.1 defines them and as
    Python's ``http.client`` sends them, so every character must be in U+0000..U+00FF; control
    characters (other than tab) are refused, and so is leading or trailing white space (a
    receiver strips it, and ``requests`` refuses leading white space outright). Text outside
    Latin-1 (names, say) has to be encoded by the sender, e.g. percent-encoded (RFC 8187) or
    Base64.
    """
    bad = _HEADER_VALUE_CONTROL_RE.search(value)
    if bad:
        return f"contains the control character U+{ord(bad.group()):04X}"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError as exc:
        char = value[exc.start]
        return (
            f"contains {char!r} (U+{ord(char):04X}), which is not ISO-8859-1 (Latin-1); "
            "header values are sent as Latin-1 bytes, so encode other text first "
            "(percent-encoding or Base64)"
        )
    if value != value.strip(" \t"):
        return "starts or ends with white space"
    return None
