"""A JSON parser that turns every malformed body into a clean 400, never a 500."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 64


def _strict_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def check_json_value(value: Any, depth: int = 0) -> None:
    """Refuse what a database would choke on later: deep nesting, NUL characters, unpaired
    surrogates and non-finite numbers. Raises ``ValueError`` naming the problem."""
    if depth > MAX_DEPTH:
        raise ValueError(f"JSON is nested deeper than {MAX_DEPTH} levels")
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


class StrictJSONParser(JSONParser):
    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("Request body is not valid UTF-8") from None
        try:
            data = json.loads(text, parse_constant=_strict_constant)
            check_json_value(data)
        except RecursionError:
            raise ParseError(f"JSON is nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None
        return data
