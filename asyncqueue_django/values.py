"""Values that cross layers: what the API hands the services, what a worker's call produced,
what the retry policy decided, what goes to the broker. Pure: no models, DRF, Celery or
requests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from asyncqueue_django.tokens import has_placeholder


@dataclass(frozen=True)
class QueueInfo:
    """One queue as a team (or the operator) sees it: open tasks by status, paused or not."""

    name: str
    paused: bool
    pending: int
    delayed: int
    processing: int
    waiting: int
    polling: int
    oldest_pending_age: float  # seconds the oldest due, unclaimed task has waited (0: none)


@dataclass(frozen=True)
class FlowControl:
    """A task's ``flowControl``: tasks of one team sharing ``key`` start at most
    ``parallelism`` at once (None: no bound) and at most ``rate`` per ``period`` seconds
    (None: no bound). At least one of the two bounds is set."""

    key: str
    parallelism: int | None = None
    rate: int | None = None
    period: int = 1


@dataclass
class TaskSpec:
    """A validated request to create a task (snake_case; ``None`` means "use the default")."""

    target_url: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    payload: Any = None
    body: str | None = None
    timeout: int | None = None
    delay_until: datetime | None = None
    priority: int = 5
    queue: str = "default"
    max_retries: int | None = None
    retry_backoff: str = "exponential"
    wait_for_signal: bool = False
    max_wait_time: int | None = None
    on_complete_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    flow_control: FlowControl | None = None
    # W3C Trace Context of the create request (already validated; "" for none).
    traceparent: str = ""
    tracestate: str = ""
    # Provider polling: the template id (or None) and the complete, validated poll settings.
    provider: str | None = None
    poll_config: dict[str, Any] | None = None

    @property
    def uses_callback_url(self) -> bool:
        """Whether the call carries the provider callback URL placeholder (in the target URL,
        the body or a string of the payload)."""
        return (
            has_placeholder(self.target_url)
            or has_placeholder(self.body)
            or has_placeholder(self.payload)
        )

    @property
    def waits_for_signal(self) -> bool:
        """Whether the task waits after a successful call: asked for, or implied by the
        callback URL placeholder (a polling task polls instead)."""
        return self.poll_config is None and (self.wait_for_signal or self.uses_callback_url)

    @property
    def has_signal_token(self) -> bool:
        """Whether the task gets a signal token: it waits, or polls (a signal may resolve a
        polling task too)."""
        return self.waits_for_signal or self.poll_config is not None

    def fingerprint(self) -> str:
        """A digest of the request, to tell a replay from a different request with the same key.

        The trace context is not part of it: a client's retry of the same request comes with a
        new span, and is still the same request."""
        data = asdict(self)
        del data["traceparent"], data["tracestate"]
        if data["delay_until"] is not None:
            data["delay_until"] = data["delay_until"].isoformat()
        return fingerprint_of(data)


def spec_of_body(data: Any) -> TaskSpec:
    """The ``TaskSpec`` of a validated create body (camelCase keys, as ``POST /v1/tasks``
    takes them once aliases are resolved): what the API creates, and what a schedule's stored
    template creates at each tick."""
    return TaskSpec(
        target_url=data["targetUrl"],
        method=data.get("method", "POST"),
        headers=data.get("headers") or {},
        payload=data.get("payload"),
        body=data.get("body"),
        timeout=data.get("timeout"),
        delay_until=data.get("delayUntil"),
        priority=data.get("priority", 5),
        queue=data.get("queue", "default"),
        max_retries=data.get("maxRetries"),
        retry_backoff=data.get("retryBackoff", "exponential"),
        wait_for_signal=data.get("waitForSignal", False),
        max_wait_time=data.get("maxWaitTime"),
        on_complete_url=data.get("onCompleteUrl"),
        metadata=data.get("metadata") or {},
        provider=data.get("provider"),
        poll_config=data.get("pollConfig"),
        flow_control=flow_control_of(data.get("flowControl")),
    )


def flow_control_of(value: FlowControl | dict[str, Any] | None) -> FlowControl | None:
    """A validated ``flowControl``: as the API validated it, or as a schedule's stored template
    keeps it (a JSON object with the same members)."""
    if value is None or isinstance(value, FlowControl):
        return value
    return FlowControl(**value)


def fingerprint_of(data: Any) -> str:
    """SHA-256 of ``data`` as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CallOutcome(Protocol):
    """What one outbound call produced, as the services read it (``http.CallResult`` is one).

    A protocol, so the write path does not import the HTTP client to name a type.
    """

    status_code: int | None
    headers: dict[str, str]
    body: bytes
    truncated: bool
    duration_ms: int
    error: str
    error_kind: str
    retry_after: float | None

    @property
    def succeeded(self) -> bool: ...

    @property
    def retryable(self) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class RetryDecision:
    """What the retry policy decided after a failed attempt.

    ``delay`` is None when there is no retry left. A short delay rides a broker countdown
    (``countdown``); a longer one is left to the due sweep, so no message sits in the broker
    with a long ETA (Redis redelivers those).
    """

    retry_number: int
    delay: float | None
    countdown: float | None

    @property
    def retry(self) -> bool:
        return self.delay is not None


@dataclass(frozen=True)
class Message:
    """One broker message: which Celery task (by name), its arguments (ids only), where
    (``queue``; ``""`` is Celery's default queue, where beat's own tasks go)."""

    task_name: str
    args: tuple[str, ...]
    queue: str
    priority: int = 5
    countdown: float = 0
