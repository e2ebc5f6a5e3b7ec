"""Access logs without credentials.

A signal token (``POST /v1/signals/{token}``) and a callback id (``POST
/v1/callbacks/{callbackId}``) are the only credential their request carries, and they travel in
the URL path, which every web server writes to its access log. Whoever can read that log could
otherwise complete or fail the task before its provider does. :class:`RedactCredentials` is a
``logging`` filter that rewrites such a path to ``/v1/signals/[redacted]`` in a log record's
message and arguments; the app puts it on the access loggers of the servers that log through
Python's ``logging``, and on Django's request log (:data:`REDACTED_LOGGERS`), when it starts.
Servers that log outside Python (nginx, a cloud load balancer) need the same rule in their own
configuration.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from asyncqueue_django.jsonvalue import REDACTED

#: The URL path segments under ``/v1/`` whose next segment is a credential.
CREDENTIAL_ROUTES = ("signals", "callbacks")

#: The loggers whose records are redacted: the access loggers of Django's development server,
#: gunicorn and uvicorn, and Django's own logs that name a request's path (``Not Found:
#: <path>``; ``Forbidden (CSRF cookie not set.): <path>``). A filter on a logger does not see
#: its children's records, so each is listed.
REDACTED_LOGGERS = (
    "django.server",
    "gunicorn.access",
    "uvicorn.access",
    "django.request",
    "django.security.csrf",
)

# Read on the text with each %XX escape decoded once, as a server decodes a path before
# routing it (so /v1/%73ignals/<token> and /v1/signals%2F<token> are caught), with the
# separators a client may double, dot or write as a backslash, and a ;parameter.
_SEP = r"[/\\]+(?:\.[/\\]+)*"
_CREDENTIAL_SEGMENT = re.compile(
    rf"[/\\]v1{_SEP}(?:{'|'.join(CREDENTIAL_ROUTES)})(?:;[^/\\?#\s]*)?{_SEP}"
    r"([^/\\?#\s\"'&;]+)",
    re.IGNORECASE,
)
# Both credentials are 64 hex digits: a run of that many is redacted wherever it is (a token
# sent after a space, or in a line some other route logs).
_HEX_RUN = re.compile(r"(?<![0-9a-f])[0-9a-f]{64,}(?![0-9a-f])", re.IGNORECASE)
_ESCAPE = re.compile(r"%([0-9a-f]{2})", re.IGNORECASE)


def _decoded(text: str) -> tuple[str, list[int]]:
    """``text`` with each ``%XX`` decoded once, and where each decoded character starts in
    ``text`` (one offset per character, then ``len(text)``)."""
    chars: list[str] = []
    starts: list[int] = []
    position = 0
    for escape in _ESCAPE.finditer(text):
        for offset in range(position, escape.start()):
            chars.append(text[offset])
            starts.append(offset)
        chars.append(chr(int(escape.group(1), 16)))
        starts.append(escape.start())
        position = escape.end()
    for offset in range(position, len(text)):
        chars.append(text[offset])
        starts.append(offset)
    starts.append(len(text))
    return "".join(chars), starts


def redact_path(text: str) -> str:
    """``text`` (a path, a URL, a request line or a whole log line) with each credential
    replaced by ``[redacted]``: ``POST /v1/signals/9f2c…e1 HTTP/1.1`` becomes
    ``POST /v1/signals/[redacted] HTTP/1.1``. A credential is the path segment after
    ``/v1/signals/`` or ``/v1/callbacks/`` (percent-encoded or not, however the separators are
    written) and any run of 64 or more hex digits. Text without one is returned as is."""
    if "%" not in text and "v1" not in text.lower() and not _HEX_RUN.search(text):
        return text
    decoded, starts = _decoded(text)
    spans = [m.span(1) for m in _CREDENTIAL_SEGMENT.finditer(decoded)]
    spans += [m.span() for m in _HEX_RUN.finditer(decoded)]
    if not spans:
        return text
    merged: list[list[int]] = []
    for start, end in sorted((starts[a], starts[b]) for a, b in spans):
        if merged and start <= merged[-1][1]:  # overlapping spans are one
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces: list[str] = []
    position = 0
    for start, end in merged:
        pieces.append(text[position:start] + REDACTED)
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _redacted(value: Any) -> Any:
    return redact_path(value) if isinstance(value, str) else value


class RedactCredentials(logging.Filter):
    """A ``logging.Filter`` that lets every record through with credential path segments
    redacted (see :func:`redact_path`) in its message and in its arguments, whether they are
    a tuple (Django's ``django.server``, uvicorn) or a mapping (gunicorn's access atoms, which
    are changed in place so their own lookup rules still apply)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redacted(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_redacted(value) for value in args)
        elif isinstance(args, Mapping):
            changes = {key: _redacted(value) for key, value in args.items()}
            try:
                args.update(changes)  # type: ignore[attr-defined]
            except AttributeError:  # a read-only mapping: a plain dict with the same items
                record.args = {**args, **changes}
        return True


def install(loggers: tuple[str, ...] = REDACTED_LOGGERS) -> None:
    """Put one :class:`RedactCredentials` on each of ``loggers`` (idempotent)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())
