"""A Python client for the asyncqueue HTTP API (``/v1``), for other Python services.

It imports only ``requests`` and the standard library: no Django settings, DRF or Celery are
needed to use it, so any Python program can talk to an asyncqueue deployment::

    from asyncqueue_django.client import AsyncQueueClient, ConflictError

    aq = AsyncQueueClient("https://queue.example.com", "aq_...")
    created = aq.tasks.create(targetUrl="https://api.example.com/convert",
                              payload={"videoId": "v1"}, idempotency_key="convert-v1")
    task = aq.tasks.wait(created["task"]["id"], timeout=120)

Task fields are passed and returned exactly as the API spells them (camelCase): what the
HTTP reference documents is what the client takes. Every error the API answers is raised as a
typed :class:`AsyncQueueError` carrying the API's ``error`` message, ``code``, ``fields`` and
the HTTP status; network failures raise :class:`TransportError`. Nothing is retried
automatically: :meth:`Tasks.create` with an ``idempotency_key`` is safe to retry yourself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import quote

import requests

from asyncqueue_django import __version__
from asyncqueue_django.client_types import (
    AsyncQueueError,
    Attempt,
    AuthenticationError,
    ConflictError,
    CreatedTask,
    CreatedTasks,
    FlowControl,
    NotFoundError,
    Pagination,
    Provider,
    Queue,
    RateLimitError,
    Schedule,
    ServerError,
    Task,
    TaskPage,
    Token,
    TransportError,
    ValidationError,
    WaitTimeout,
    error_from_response,
)

__all__ = [
    "TERMINAL_STATUSES",
    "AsyncQueueClient",
    "AsyncQueueError",
    "Attempt",
    "AuthenticationError",
    "ConflictError",
    "CreatedTask",
    "CreatedTasks",
    "FlowControl",
    "NotFoundError",
    "Pagination",
    "Provider",
    "Queue",
    "RateLimitError",
    "Schedule",
    "ServerError",
    "Task",
    "TaskPage",
    "Token",
    "TransportError",
    "ValidationError",
    "WaitTimeout",
    "error_from_response",
]

DEFAULT_TIMEOUT = 30.0
MAX_LONG_POLL = 25  # seconds the server holds GET /v1/tasks/{id}?wait=N at most
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "timeout", "cancelled"})
USER_AGENT = f"asyncqueue-django-client/{__version__} python-requests/{requests.__version__}"

# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


def _segment(value: object, what: str) -> str:
    text = str(value)
    if not text:
        raise ValueError(f"{what} must not be empty")
    return quote(text, safe="")


class AsyncQueueClient:
    """A client for one asyncqueue deployment.

    ``base_url`` is where the app's URLs are mounted (``/v1`` is appended; a trailing ``/v1``
    is accepted too). ``api_key`` authenticates task calls; signals need none (the token is
    the credential), so a client made only to send signals may leave it out. ``timeout`` is
    the per-request timeout in seconds (long polls add their hold time to it). Pass a
    ``requests.Session`` to share connection pools, proxies or TLS settings; a session made
    here is closed by :meth:`close` (or by leaving a ``with`` block).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        base = base_url.strip().rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.base_url = base.removesuffix("/v1")
        self.timeout = float(timeout)
        self._api_key = api_key
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        self.tasks = Tasks(self)
        self.signals = Signals(self)
        self.tokens = Tokens(self)
        self.providers = Providers(self)
        self.schedules = Schedules(self)
        self.queues = Queues(self)

    def __repr__(self) -> str:  # never shows the key
        return f"AsyncQueueClient({self.base_url!r})"

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> AsyncQueueClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
        timeout: float | None = None,
        secret: str | None = None,
    ) -> Any:
        """Send one request to ``path`` (e.g. ``/v1/tasks``) and return the parsed JSON body.

        ``secret`` (a signal token in the path) is kept out of error messages.
        """
        all_headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if authenticated and self._api_key:
            all_headers["Authorization"] = f"Bearer {self._api_key}"
        data = None
        if body is not None:
            data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        shown = f"{method} {path.replace(secret, '<token>') if secret else path}"
        try:
            response = self.session.request(
                method,
                self.base_url + path,
                data=data,
                params=params,
                headers=all_headers,
                timeout=timeout if timeout is not None else self.timeout,
                allow_redirects=False,  # a redirected POST would silently become a GET
            )
        except requests.RequestException as exc:
            reason = str(exc).replace(secret, "<token>") if secret else str(exc)
            if self._api_key:
                reason = reason.replace(self._api_key, "<api key>")
            kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
            # "from None": the original exception's text may carry the token in the URL.
            raise TransportError(
                f"{shown} {kind}: {type(exc).__name__}: {reason}", code="transport_error"
            ) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        if 300 <= response.status_code < 400:
            raise AsyncQueueError(
                f"{shown}: unexpected redirect to {response.headers.get('Location', '?')}",
                http_status=response.status_code,
                code="unexpected_redirect",
            )
        try:
            return response.json()
        except ValueError:
            raise AsyncQueueError(
                f"{shown}: the response is not JSON",
                http_status=response.status_code,
                code="invalid_response",
            ) from None


class Tasks:
    """``client.tasks``: ``/v1/tasks``."""

    def __init__(self, client: AsyncQueueClient) -> None:
        self._client = client

    def create(
        self,
        fields: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **more_fields: Any,
    ) -> CreatedTask:
        """``POST /v1/tasks``. Fields are the API's, in camelCase (``targetUrl``, ``payload``,
        ``delay``, ``waitForSignal`` …), as keywords and/or one mapping. ``idempotency_key``
        is sent as the ``Idempotency-Key`` header: a replay returns the original task. (With a
        ``schedule`` field the answer is ``{"schedule"}``: see :meth:`Schedules.create`.)"""
        body = {**(fields or {}), **more_fields}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        return cast(
            CreatedTask, self._client.request("POST", "/v1/tasks", body=body, headers=headers)
        )

    def create_batch(self, items: Iterable[Mapping[str, Any]]) -> CreatedTasks:
        """``POST /v1/tasks/batch``: 1-100 create bodies (camelCase, each may carry its own
        ``idempotencyKey``), created all together or not at all. A :class:`ValidationError`
        names the bad fields as ``tasks[<index>].<field>``; on success the answer has one
        ``{"task", "signalToken"?}`` per item, in order."""
        body = {"tasks": [dict(item) for item in items]}
        return cast(CreatedTasks, self._client.request("POST", "/v1/tasks/batch", body=body))

    def get(self, task_id: object, *, wait: int | None = None) -> Task:
        """``GET /v1/tasks/{id}`` (with its attempt history). ``wait`` (1-25 s) asks the server
        to hold the request until the status changes (long polling)."""
        params: dict[str, str | int] = {}
        timeout = None
        if wait is not None:
            if not 0 <= wait <= MAX_LONG_POLL:
                raise ValueError(f"wait must be between 0 and {MAX_LONG_POLL} seconds")
            params["wait"] = wait
            timeout = self._client.timeout + wait
        path = f"/v1/tasks/{_segment(task_id, 'task_id')}"
        body = self._client.request("GET", path, params=params or None, timeout=timeout)
        return cast(Task, body["task"])

    def list(
        self,
        status: str | Iterable[str] | None = None,
        queue: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        *,
        wait_for_signal: bool | None = None,
        sandbox: bool | None = None,
    ) -> TaskPage:
        """``GET /v1/tasks``: newest first, ``{"tasks": [...], "pagination": {...}}``.
        ``status`` may be one status or several."""
        params: dict[str, str | int] = {}
        if status is not None:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        if queue is not None:
            params["queue"] = queue
        if limit is not None:
            params["limit"] = limit
        if offset is not None:
            params["offset"] = offset
        for name, flag in (("waitForSignal", wait_for_signal), ("sandbox", sandbox)):
            if flag is not None:
                params[name] = "true" if flag else "false"
        return cast(TaskPage, self._client.request("GET", "/v1/tasks", params=params or None))

    def cancel(self, task_id: object) -> Task:
        """``POST /v1/tasks/{id}/cancel``: pending, delayed or waiting → cancelled; otherwise
        :class:`ConflictError` naming the status."""
        path = f"/v1/tasks/{_segment(task_id, 'task_id')}/cancel"
        return cast(Task, self._client.request("POST", path)["task"])

    def retry(self, task_id: object) -> Task:
        """``POST /v1/tasks/{id}/retry``: a failed or timed-out task runs again; otherwise
        :class:`ConflictError` naming the status."""
        path = f"/v1/tasks/{_segment(task_id, 'task_id')}/retry"
        return cast(Task, self._client.request("POST", path)["task"])

    def wait(
        self,
        task_id: object,
        timeout: float = 60.0,
        *,
        poll: float = 1.0,
        until: Iterable[str] | None = None,
    ) -> Task:
        """Wait until the task's status is in ``until`` (default: a terminal status) and return
        it; a terminal status that is not in ``until`` also returns, as it cannot change.

        Uses long polling (``?wait=N``, N ≤ 25) and re-requests until then; a server that
        answers at once anyway is polled every ``poll`` seconds. Raises :class:`WaitTimeout`
        (carrying the last-seen task) after ``timeout`` seconds.
        """
        if not timeout >= 0:
            raise ValueError("timeout must be 0 or more seconds")
        if not poll > 0:
            raise ValueError("poll must be positive")
        targets = frozenset(until) if until is not None else TERMINAL_STATUSES
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            hold = min(MAX_LONG_POLL, int(remaining)) if remaining >= 1 else 0
            asked = time.monotonic()
            task = self.get(task_id, wait=hold or None)
            status = task.get("status")
            if status in targets or status in TERMINAL_STATUSES:
                return task
            now = time.monotonic()
            if now >= deadline:
                raise WaitTimeout(f"Task {task_id} is still {status} after {timeout:g}s", task=task)
            # Pace the loop: a long poll that returned early (or a server that ignores
            # ?wait=) must not turn into a busy loop.
            pause = min(poll - (now - asked), deadline - now)
            if pause > 0:
                time.sleep(pause)


class Tokens:
    """``client.tokens``: the Token Vault, ``/v1/tokens``. Values go in and never come out;
    a task header whose value is a token's ``id`` is sent with the secret in its place."""

    def __init__(self, client: AsyncQueueClient) -> None:
        self._client = client

    def create(self, name: str, value: str) -> Token:
        """``POST /v1/tokens``: store ``value`` (encrypted at rest); returns ``{id, name,
        createdAt}``. The value is kept out of error messages."""
        response = self._client.request(
            "POST", "/v1/tokens", body={"name": name, "value": value}, secret=value or None
        )
        return cast(Token, response["token"])

    def list(self) -> list[Token]:
        """``GET /v1/tokens``: the team's tokens that are not revoked, newest first."""
        return cast(list[Token], self._client.request("GET", "/v1/tokens")["tokens"])

    def revoke(self, token_id: str) -> Token:
        """``DELETE /v1/tokens/{id}``: tasks that use it fail their next attempt (not retried).
        Returns ``{id, name, revokedAt}``."""
        path = f"/v1/tokens/{_segment(token_id, 'token_id')}"
        return cast(Token, self._client.request("DELETE", path)["token"])


class Providers:
    """``client.providers``: the provider templates a task's ``provider`` may name."""

    def __init__(self, client: AsyncQueueClient) -> None:
        self._client = client

    def list(self) -> list[Provider]:
        """``GET /v1/providers`` (no API key): ``[{id, name, description, docs, pollConfig}]``."""
        response = self._client.request("GET", "/v1/providers", authenticated=False)
        return cast(list[Provider], response["providers"])


class Schedules:
    """``client.schedules``: ``/v1/schedules``, a task created at every tick of a cron
    expression. The ``task`` template is a create body, as :meth:`Tasks.create` takes it."""

    def __init__(self, client: AsyncQueueClient) -> None:
        self._client = client

    def _path(self, schedule_id: object, action: str = "") -> str:
        return f"/v1/schedules/{_segment(schedule_id, 'schedule_id')}{action}"

    def create(
        self,
        cron: str,
        task: Mapping[str, Any],
        *,
        timezone: str | None = None,
        paused: bool | None = None,
    ) -> Schedule:
        """``POST /v1/schedules``: ``cron`` (five fields) read in ``timezone`` (an IANA name,
        default UTC). A :class:`ValidationError` names ``cron``, ``timezone`` or
        ``task.<field>``."""
        body: dict[str, Any] = {"cron": cron, "task": dict(task)}
        if timezone is not None:
            body["timezone"] = timezone
        if paused is not None:
            body["paused"] = paused
        return cast(Schedule, self._client.request("POST", "/v1/schedules", body=body)["schedule"])

    def list(self) -> list[Schedule]:
        """``GET /v1/schedules``: the team's schedules, newest first."""
        return cast(list[Schedule], self._client.request("GET", "/v1/schedules")["schedules"])

    def get(self, schedule_id: object) -> Schedule:
        """``GET /v1/schedules/{id}``."""
        return cast(Schedule, self._client.request("GET", self._path(schedule_id))["schedule"])

    def update(self, schedule_id: object, **fields: Any) -> Schedule:
        """``PATCH /v1/schedules/{id}`` with any of ``cron``, ``timezone``, ``task`` (replaces
        the template as a whole) and ``paused``."""
        response = self._client.request("PATCH", self._path(schedule_id), body=fields)
        return cast(Schedule, response["schedule"])

    def delete(self, schedule_id: object) -> Schedule:
        """``DELETE /v1/schedules/{id}``: no more ticks; the tasks it created stay."""
        return cast(Schedule, self._client.request("DELETE", self._path(schedule_id))["schedule"])

    def pause(self, schedule_id: object) -> Schedule:
        """``POST /v1/schedules/{id}/pause``: no tick runs until :meth:`resume`."""
        path = self._path(schedule_id, "/pause")
        return cast(Schedule, self._client.request("POST", path)["schedule"])

    def resume(self, schedule_id: object) -> Schedule:
        """``POST /v1/schedules/{id}/resume``: from the next tick on (missed ticks do not run)."""
        path = self._path(schedule_id, "/resume")
        return cast(Schedule, self._client.request("POST", path)["schedule"])


class Queues:
    """``client.queues``: the team's queues, ``/v1/queues``. A paused queue accepts tasks and
    starts none until resumed (waiting tasks still take signals and time out)."""

    def __init__(self, client: AsyncQueueClient) -> None:
        self._client = client

    def list(self) -> list[Queue]:
        """``GET /v1/queues``: each queue with open tasks of the team (or paused), by name."""
        return cast(list[Queue], self._client.request("GET", "/v1/queues")["queues"])

    def pause(self, name: str) -> Queue:
        """``POST /v1/queues/{name}/pause`` (for the team's own tasks); idempotent."""
        path = f"/v1/queues/{_segment(name, 'name')}/pause"
        return cast(Queue, self._client.request("POST", path)["queue"])

    def resume(self, name: str) -> Queue:
        """``POST /v1/queues/{name}/resume``; idempotent. ``paused`` stays true while the
        operator has paused the queue for every team."""
        path = f"/v1/queues/{_segment(name, 'name')}/resume"
        return cast(Queue, self._client.request("POST", path)["queue"])


class Signals:
    """``client.signals``: ``/v1/signals/{token}`` (no API key: the token is the credential)."""

    def __init__(self, client: AsyncQueueClient) -> None:
        self._client = client

    def send(
        self,
        token: str,
        status: Literal["completed", "failed"],
        result: Any = None,
        error: str | None = None,
    ) -> Task:
        """Complete or fail the task behind ``token``. A waiting task is resolved at once; a
        task whose callback has not finished records the signal (its ``earlySignal``) and
        applies it when the callback succeeds. :class:`ConflictError` names the status when
        the task can no longer be signalled; :class:`NotFoundError` for an unknown token."""
        body: dict[str, Any] = {"status": status}
        if result is not None:
            body["result"] = result
        if error is not None:
            body["error"] = error
        path = f"/v1/signals/{_segment(token, 'token')}"
        response = self._client.request(
            "POST", path, body=body, authenticated=False, secret=_segment(token, "token")
        )
        return cast(Task, response["task"])

    def heartbeat(self, token: str, extend_by: int) -> Task:
        """Push the waiting task's ``waitDeadline`` to at least ``extend_by`` seconds from now
        (bounded by the server's maximum wait time)."""
        path = f"/v1/signals/{_segment(token, 'token')}/heartbeat"
        response = self._client.request(
            "POST",
            path,
            body={"extendBy": extend_by},
            authenticated=False,
            secret=_segment(token, "token"),
        )
        return cast(Task, response["task"])
