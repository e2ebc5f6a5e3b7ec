"""The Python client's response shapes (as the API spells them) and its typed errors, one per
kind of HTTP answer. Imported and re-exported by ``asyncqueue_django.client``; like it, this
module imports only ``requests`` and the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

import requests

from asyncqueue_django.backoff import parse_retry_after

TaskStatus = Literal[
    "pending",
    "delayed",
    "processing",
    "waiting",
    "polling",
    "completed",
    "failed",
    "timeout",
    "cancelled",
]


# --------------------------------------------------------------------------------------------
# Response shapes
# --------------------------------------------------------------------------------------------


class Attempt(TypedDict):
    """One call to the task's target (``GET /v1/tasks/{id}`` only)."""

    number: int
    startedAt: str
    duration: int | None
    statusCode: int | None
    error: str | None
    outcome: str


class Task(TypedDict, total=False):
    """The task object. Timestamps are ISO 8601 strings, as the API sends them. ``total=False``
    so that fields a newer server adds, or a list view leaves out (``attempts``), are fine."""

    id: str
    status: TaskStatus
    targetUrl: str
    method: str
    headers: dict[str, str]
    payload: Any
    body: str | None
    timeout: int
    delayUntil: str | None
    priority: int
    queue: str
    maxRetries: int
    retryBackoff: str
    retryCount: int
    nextAttemptAt: str | None
    waitForSignal: bool
    maxWaitTime: int
    waitDeadline: str | None
    onCompleteUrl: str | None
    metadata: dict[str, Any]
    sandbox: bool
    provider: str | None
    pollConfig: dict[str, Any] | None
    pollUrl: str | None
    pollCount: int
    lastPolledAt: str | None
    lastPollStatusCode: int | None
    lastPollError: str | None
    nextPollAt: str | None
    callbackId: str  # only in the answer that created a task with a callback URL
    result: Any
    error: str | None
    idempotencyKey: str | None
    flowControl: FlowControl | None
    signalReceivedAt: str | None
    earlySignal: dict[str, Any] | None
    createdAt: str
    updatedAt: str
    startedAt: str | None
    completedAt: str | None
    attempts: list[Attempt]


class FlowControl(TypedDict, total=False):
    """A task's ``flowControl``: tasks of the team sharing ``key`` start at most
    ``parallelism`` at once and at most ``rate`` per ``period`` seconds."""

    key: str
    parallelism: int | None
    rate: int | None
    period: int | None


class Queue(TypedDict):
    """One of the team's queues: open tasks by status, and whether it is paused."""

    name: str
    paused: bool
    pending: int
    delayed: int
    processing: int
    waiting: int
    polling: int
    oldestPendingAgeSeconds: float


class CreatedTask(TypedDict):
    """``POST /v1/tasks``: the task, its one-time ``signalToken`` when it waits for a signal
    or polls, and its one-time provider ``callbackUrl`` (both absent when an Idempotency-Key
    replay returned the original task)."""

    task: Task
    signalToken: NotRequired[str]
    callbackUrl: NotRequired[str]  # a task whose call carries {asyncqueue_callback_url}


class Provider(TypedDict):
    """A provider template of ``GET /v1/providers``: a ``pollConfig`` a task can name."""

    id: str
    name: str
    description: str
    docs: str
    pollConfig: dict[str, Any]


class CreatedTasks(TypedDict):
    """``POST /v1/tasks/batch``: one entry per item, in the order given."""

    tasks: list[CreatedTask]


class Token(TypedDict, total=False):
    """A Token Vault entry: never its value. ``revokedAt`` only in a revoke's answer."""

    id: str
    name: str
    createdAt: str
    revokedAt: str


class Schedule(TypedDict, total=False):
    """A schedule: a task ``template`` created at every tick of ``cron`` in ``timezone``."""

    id: str
    cron: str
    timezone: str
    task: dict[str, Any]
    paused: bool
    sandbox: bool
    nextRunAt: str | None
    lastRunAt: str | None
    lastTaskId: str | None
    lastError: str | None
    createdAt: str


class Pagination(TypedDict):
    total: int
    limit: int
    offset: int
    hasMore: bool


class TaskPage(TypedDict):
    tasks: list[Task]
    pagination: Pagination


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class AsyncQueueError(Exception):
    """An error answered by the API (or, for subclasses below, around it).

    ``error`` is the API's human message, ``code`` its machine-readable code, ``fields`` the
    per-field messages of a validation error, ``http_status`` the HTTP status (None when no
    response arrived) and ``body`` the parsed error body.
    """

    def __init__(
        self,
        error: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        fields: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.http_status = http_status
        self.code = code
        self.fields: dict[str, str] = dict(fields or {})
        self.body = body

    @property
    def message(self) -> str:
        return self.error

    def __str__(self) -> str:
        prefix = f"HTTP {self.http_status}" if self.http_status is not None else ""
        if self.code:
            prefix = f"{prefix} {self.code}".strip()
        return f"{prefix}: {self.error}" if prefix else self.error


class AuthenticationError(AsyncQueueError):
    """401: no API key, or an invalid or revoked one."""


class NotFoundError(AsyncQueueError):
    """404: no such task (or another team's), or an unknown signal token."""


class ConflictError(AsyncQueueError):
    """409: the task is not in a status the operation accepts; ``status`` names the status it
    is in (None for conflicts that are not about a status, e.g. an Idempotency-Key reused with
    a different request)."""

    def __init__(self, error: str, *, status: str | None = None, **kwargs: Any) -> None:
        super().__init__(error, **kwargs)
        self.status = status


class ValidationError(AsyncQueueError):
    """400 (invalid request; see ``fields``), 413 (request too large), 415 (not JSON)."""


class RateLimitError(AsyncQueueError):
    """429: too many requests; ``retry_after`` is the number of seconds to wait (or None)."""

    def __init__(self, error: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(error, **kwargs)
        self.retry_after = retry_after


class ServerError(AsyncQueueError):
    """5xx: the server (or a proxy in front of it) failed."""


class TransportError(AsyncQueueError):
    """No usable HTTP response: connection refused or reset, DNS failure, TLS error, timeout."""


class WaitTimeout(AsyncQueueError, TimeoutError):
    """:meth:`Tasks.wait` ran out of time; ``task`` is the task as last seen."""

    def __init__(self, error: str, *, task: Task) -> None:
        super().__init__(error, code="wait_timeout")
        self.task = task


_ERRORS_BY_STATUS: dict[int, type[AsyncQueueError]] = {
    400: ValidationError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    415: ValidationError,
    429: RateLimitError,
}


def error_from_response(response: requests.Response) -> AsyncQueueError:
    """The typed error for an HTTP error response (``{"error", "code", "fields"}`` bodies, or
    anything else a proxy may answer)."""
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message: str = body["error"]
        code = body.get("code") if isinstance(body.get("code"), str) else None
        raw_fields = body.get("fields")
        fields = (
            {str(k): str(v) for k, v in raw_fields.items()} if isinstance(raw_fields, dict) else {}
        )
    else:
        text = " ".join(response.text.split())[:200] if response.content else ""
        message = f"HTTP {status} {response.reason or ''}".strip() + (f": {text}" if text else "")
        code, fields = None, {}
    common: dict[str, Any] = {"http_status": status, "code": code, "fields": fields, "body": body}
    if status == 409:
        task_status = body.get("status") if isinstance(body, dict) else None
        return ConflictError(
            message, status=task_status if isinstance(task_status, str) else None, **common
        )
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimitError(message, retry_after=retry_after, **common)
    if status >= 500:
        return ServerError(message, **common)
    return _ERRORS_BY_STATUS.get(status, AsyncQueueError)(message, **common)
