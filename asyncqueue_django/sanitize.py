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
