"""W3C Trace Context (``traceparent``/``tracestate``) carried from the create request to every
call a task makes, and optional OpenTelemetry spans.

The parsing rules are the W3C Trace Context Level 1 ones: a ``traceparent`` that does not parse
is dropped (the task is still created: a tracing header never refuses work), and so is a
``tracestate`` that does not parse or comes without a valid ``traceparent``.

OpenTelemetry is optional (the ``otel`` extra, ``opentelemetry-api``). When it is installed,
:func:`span` opens a span whose parent is the task's stored context, and
:func:`outbound_headers` propagates the current span, so the target sees the call's span as
its parent. Without it, :func:`span` does nothing and the stored headers go out as received.

Pure: no models, DRF, Celery or requests.
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "TraceContext",
    "current_headers",
    "now_ns",
    "outbound_headers",
    "parse",
    "parse_traceparent",
    "parse_tracestate",
    "record",
    "span",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

#: version-traceid-parentid-flags; a later version may append fields after a dash.
_TRACEPARENT_RE = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<parent_id>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?$"
)
_KEY_RE = re.compile(
    r"^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$"
)
_VALUE_RE = re.compile(r"^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$")
MAX_TRACESTATE_MEMBERS = 32
MAX_TRACESTATE_LENGTH = 512

#: The OpenTelemetry ``TracerProvider`` spans go to; None: the global one (what the host's
#: OpenTelemetry setup configures). Tests set their own.
tracer_provider: Any = None


@dataclass(frozen=True)
class TraceContext:
    """A valid ``traceparent`` (normalised to version 00) and its ``tracestate`` ("" if none)."""

    traceparent: str
    tracestate: str = ""

    @property
    def trace_id(self) -> str:
        return self.traceparent[3:35]

    def headers(self) -> tuple[str, str]:
        return self.traceparent, self.tracestate


def parse_traceparent(value: str | None) -> str | None:
    """The ``traceparent`` as version 00, or None when it is not a valid one.

    Version ``ff`` is invalid; version 00 has exactly four fields; a higher version may carry
    more, of which only the four of version 00 are kept. All-zero trace and parent ids are
    invalid.
    """
    if not value or len(value) > 512:
        return None
    match = _TRACEPARENT_RE.match(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.group(
        "version", "trace_id", "parent_id", "flags", "rest"
    )
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return f"00-{trace_id}-{parent_id}-{flags}"


def parse_tracestate(value: str | None) -> str:
    """The ``tracestate`` list normalised (members joined by ``,``), or "" when any member does
    not parse, a key repeats, or there are more than 32 members or 512 characters."""
    if not value or len(value) > MAX_TRACESTATE_LENGTH * 2:
        return ""
    members: list[str] = []
    keys: set[str] = set()
    for raw in value.split(","):
        member = raw.strip(" \t")
        if not member:
            continue  # empty list members are allowed and ignored
        key, sep, val = member.partition("=")
        if not sep or not _KEY_RE.match(key) or not _VALUE_RE.match(val) or key in keys:
            return ""
        keys.add(key)
        members.append(f"{key}={val}")
    text = ",".join(members)
    if len(members) > MAX_TRACESTATE_MEMBERS or len(text) > MAX_TRACESTATE_LENGTH:
        return ""
    return text


def parse(headers: Mapping[str, str]) -> TraceContext | None:
    """The trace context of a request's headers (any case), or None when it has no valid
    ``traceparent``."""
    lower = {k.lower(): v for k, v in headers.items()}
    traceparent = parse_traceparent(lower.get(TRACEPARENT))
    if traceparent is None:
        return None
    return TraceContext(traceparent, parse_tracestate(lower.get(TRACESTATE)))


# -- OpenTelemetry (optional) ------------------------------------------------------------------


@functools.cache
def _otel() -> Any:
    """The ``opentelemetry`` API modules, or None when the package is not installed (looked
    up once: a failing import is not cached by Python and would search ``sys.path`` on every
    request)."""
    try:
        from opentelemetry import propagate, trace
    except ImportError:
        return None
    return (trace, propagate)


def _carrier(traceparent: str, tracestate: str) -> dict[str, str]:
    carrier = {TRACEPARENT: traceparent} if traceparent else {}
    if traceparent and tracestate:
        carrier[TRACESTATE] = tracestate
    return carrier


@contextlib.contextmanager
def span(
    name: str,
    traceparent: str = "",
    tracestate: str = "",
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[None]:
    """An OpenTelemetry span ``name`` (a child of the stored context when there is one) around
    the block, when OpenTelemetry is installed; otherwise nothing. Never raises for tracing."""
    otel = _otel()
    if otel is None:
        yield
        return
    trace, propagate = otel
    parent = propagate.extract(_carrier(traceparent, tracestate)) if traceparent else None
    tracer = trace.get_tracer("asyncqueue_django", tracer_provider=tracer_provider)
    with tracer.start_as_current_span(name, context=parent, attributes=dict(attributes or {})):
        yield


def now_ns() -> int:
    """Wall-clock nanoseconds (OpenTelemetry's time base for span start and end)."""
    return time.time_ns()


def record(name: str, traceparent: str, tracestate: str, *, start_ns: int, task_id: str) -> None:
    """A finished span ``name`` from ``start_ns`` to now, for work whose trace context is known
    only once it is done (the claim reads the task)."""
    otel = _otel()
    if otel is None:
        return
    trace, propagate = otel
    parent = propagate.extract(_carrier(traceparent, tracestate)) if traceparent else None
    tracer = trace.get_tracer("asyncqueue_django", tracer_provider=tracer_provider)
    tracer.start_span(
        name, context=parent, start_time=start_ns, attributes={"asyncqueue.task_id": task_id}
    ).end()


def outbound_headers(traceparent: str, tracestate: str) -> dict[str, str]:
    """The trace headers of an outbound call of a task with this stored context.

    Inside a span of the same trace (OpenTelemetry installed, :func:`span` around the call)
    the current span is propagated; otherwise the stored headers go out as received. A task
    without a trace context sends none.
    """
    if not traceparent:
        return {}
    otel = _otel()
    if otel is not None:
        trace, propagate = otel
        current = trace.get_current_span().get_span_context()
        if current.is_valid and f"{current.trace_id:032x}" == traceparent[3:35]:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            if parse_traceparent(carrier.get(TRACEPARENT)):
                return _carrier(carrier[TRACEPARENT], carrier.get(TRACESTATE, ""))
    return _carrier(traceparent, tracestate)


def current_headers() -> dict[str, str]:
    """The trace headers of the current span (OpenTelemetry installed and a span open), else
    none: what work started inside a span (a schedule's tick) stores as its trace context."""
    otel = _otel()
    if otel is None:
        return {}
    trace, propagate = otel
    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not parse_traceparent(carrier.get(TRACEPARENT)):
        return {}
    return _carrier(carrier[TRACEPARENT], carrier.get(TRACESTATE, ""))
