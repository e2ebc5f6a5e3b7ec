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


@dataclass(frozen=True)
class QueueInfo:
    """One queue as a team (or the operator) sees it: open tasks by status, paused or not."""

    name: str
    paused: bool
    pending: int
    delayed: int
    processing: int
    waiting: int
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

    def fingerprint(self) -> str:
        """A digest of the request, to tell a replay from a different request with the same key.

        The trace context is not part of it: a client's retry of the same request comes with a
        new span, and is still the same request."""
        data = asdict(self)
        del data["traceparent"], data["tracestate"]
        if data["delay_until"] is not None:
            data["delay_until"] = data["delay_until"].isoformat()
        return fingerprint_of(data)


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
    """One broker message: which Celery task (by name), its arguments (ids only), where."""

    task_name: str
    args: tuple[str, ...]
    queue: str
    priority: int = 5
    countdown: float = 0
