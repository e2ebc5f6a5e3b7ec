"""Access logs without credentials.

A signal token (``POST /v1/signals/{token}``) and a callback id (``POST
/v1/callbacks/{callbackId}``) are the only credential their request carries, and they travel in
the URL path, which every web server writes to its access log. Whoever can read that log could
otherwise complete or fail the task before its provider does. :class:`RedactCredentials` is a
``logging`` filter that rewrites such a path to ``/v1/signals/[redacted]`` in a log record's
message and arguments; the app puts it on the access loggers of the servers that log through
Python's ``logging`` (:data:`ACCESS_LOGGERS`) when it starts. Servers that log outside Python
(nginx, a cloud load balancer) need the same rule in their own configuration.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from asyncqueue_django.jsonvalue import REDACTED

#: The URL path segments under ``/v1/`` whose next segment is a credential.
CREDENTIAL_ROUTES = ("signals", "callbacks")

#: The access loggers of Django's development server, gunicorn and uvicorn.
ACCESS_LOGGERS = ("django.server", "gunicorn.access", "uvicorn.access")

# The segment after /v1/signals/ or /v1/callbacks/, wherever the API is mounted, up to the next
# path separator, query, fragment, white space or quote (a request line is quoted in most
# formats). Percent-encoded bytes are part of the segment.
_CREDENTIAL_SEGMENT = re.compile(
    r"(/v1/(?:" + "|".join(CREDENTIAL_ROUTES) + r")/)[^/?#\s\"']+", re.IGNORECASE
)


def redact_path(text: str) -> str:
    """``text`` (a path, a URL, a request line or a whole log line) with each credential
    segment replaced by ``[redacted]``: ``POST /v1/signals/9f2c…e1 HTTP/1.1`` becomes
    ``POST /v1/signals/[redacted] HTTP/1.1``. Text without one is returned as is."""
    if "/v1/" not in text.lower():
        return text
    return _CREDENTIAL_SEGMENT.sub(r"\1" + REDACTED, text)


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


def install(loggers: tuple[str, ...] = ACCESS_LOGGERS) -> None:
    """Put one :class:`RedactCredentials` on each of ``loggers`` (idempotent)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())
