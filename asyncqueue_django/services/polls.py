"""Provider polls as a kind of outbound work: after a task's submit call succeeds, the task is
``polling``, and every ``interval`` seconds a worker claims it, GETs the provider's status URL
and reports what it read; the job done → ``completed`` with the extracted result, failed →
``failed`` with the provider's error, still running (or an answer that could not be read) →
the next poll, until ``maxDuration`` → ``timeout``.

Polls are scheduled in the database (``next_attempt_at`` of a polling task), claimed under a
lease, bounded by ``http.call``'s deadline, recorded on the task (``poll_count``,
``last_polled_at``, ``last_poll_status_code``, ``last_poll_error``) and recovered by the sweeps
when a worker dies mid-poll — the shared engine's mechanics (``engine.py``); this module is the
adapter that says what a poll's answer means. The pure rules (templates, paths, reading an
answer) are in ``providers.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.utils import timezone

from asyncqueue_django import providers, states
from asyncqueue_django.conf import app_settings
from asyncqueue_django.jsonvalue import check_json_value
from asyncqueue_django.models import PollingTask, Task
from asyncqueue_django.representation import RESOLVED
from asyncqueue_django.services import engine
from asyncqueue_django.services.engine import AttemptRecord, Outcome, Table, WorkKind
from asyncqueue_django.services.terminal import on_terminal, terminal_rows
from asyncqueue_django.services.waits import poll_timeout_error
from asyncqueue_django.states import AttemptOutcome, TaskStatus
from asyncqueue_django.validators import MAX_ERROR_LENGTH
from asyncqueue_django.values import CallOutcome, Message

#: Polling tasks, as the rows of this kind of work (their own sweep queries).
POLL_TASKS: Table[PollingTask] = Table(PollingTask, states.TASK)


def _clip(text: str) -> str:
    return text[:MAX_ERROR_LENGTH]


def start_polling(task: Task, call: CallOutcome, result: Any, now: datetime) -> Outcome:
    """Where a successful submit call leaves a task that polls: ``polling`` with the poll URL
    (and result URL) resolved from the submit answer, the first poll due after ``interval``
    and the deadline ``maxDuration`` from now; or ``failed`` when the answer lacks what the
    templates need (nothing could ever be polled)."""
    config = dict(task.poll_config or {})
    try:
        body = providers.parse_body(call.body, call.truncated)
    except (ValueError, RecursionError):
        body = None
    try:
        resolved = {"url": providers.render(config["urlTemplate"], body, call.headers)}
        if config.get("resultUrlTemplate"):
            resolved["resultUrl"] = providers.render(
                config["resultUrlTemplate"], body, call.headers
            )
    except providers.TemplateError as exc:
        return Outcome(
            TaskStatus.FAILED,
            {"result": result, "error": _clip(f"Cannot poll: {exc}"), "completed_at": now},
            attempt_outcome=AttemptOutcome.FAILED,
        )
    fields = {
        "result": result,
        "poll_config": {**config, RESOLVED: resolved},
        "wait_deadline": now + timedelta(seconds=config["maxDuration"]),
        **_next_poll(config, now, now + timedelta(seconds=config["maxDuration"])),
    }
    return Outcome(TaskStatus.POLLING, fields, attempt_outcome=AttemptOutcome.SUCCEEDED)


def _next_poll(config: dict[str, Any], now: datetime, deadline: datetime) -> dict[str, Any]:
    """The next poll: ``interval`` from now, never after the deadline (the poll at the
    deadline is the last). Short delays ride a broker countdown (published on commit, so
    ``dispatched_at`` is set); longer ones wait for the due sweep."""
    due = min(now + timedelta(seconds=config["interval"]), deadline)
    short = (due - now).total_seconds() <= app_settings.COUNTDOWN_MAX
    return {"next_attempt_at": due, "dispatched_at": now if short else None}


def _fetched_result(call: CallOutcome) -> tuple[Any, str]:
    """The body fetched from ``resultUrlTemplate`` (JSON, else text), or an error text."""
    fetched = getattr(call, "fetched", None)
    if fetched is None:
        return None, "the result URL was not fetched"
    if not fetched.succeeded:
        return None, f"fetching the result failed: {fetched.describe()}"
    try:
        return providers.parse_body(fetched.body, fetched.truncated), ""
    except (ValueError, RecursionError):
        text = fetched.body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        return text[: app_settings.MAX_STORED_RESPONSE_BYTES], ""


class Polls(WorkKind[PollingTask]):
    """One GET of a polling task's status URL per attempt."""

    name = "poll"
    task_name = "asyncqueue.poll_task"
    table = POLL_TASKS
    related = ("team",)
    claim_from = states.POLL_OPEN
    claim_to = None  # a claimed task stays polling; the lease marks the poll in flight
    in_flight = states.POLL_OPEN
    message_fields = ("queue", "priority")
    # Polls are woken like callbacks: one message per queue (and due slot) for the polls that
    # fall due together, each wake-up claiming up to BATCH_SIZE of them.
    wakes = True

    def message(self, pk: Any, *values: Any, countdown: float = 0) -> Message:
        """One poll's own message (``asyncqueue.poll_task``): what older releases sent, still
        run when it arrives; new polls are woken (:meth:`wake_target`)."""
        queue, priority = values if values else ("default", 5)
        return Message(self.task_name, (str(pk),), queue, priority, countdown)

    def wake_target(self, *values: Any) -> tuple[str, int]:
        queue, priority = values[:2]
        return str(queue), int(priority)

    def batch_filters(self, queue: str) -> tuple[dict[str, Any], str, list[Any], str]:
        # Higher priority first, then the longest due (as for callbacks).
        return {"queue": queue}, "queue = %s", [queue], "priority DESC, next_attempt_at"

    def lease_seconds(self, row: PollingTask) -> float:
        # A poll, and the result fetch after it: each bounded by timeout + connect timeout.
        return float(2 * (row.timeout + app_settings.CONNECT_TIMEOUT) + app_settings.LEASE_MARGIN)

    def lease_sql(self) -> tuple[str, list[Any]]:
        return "(2 * (timeout + %s::double precision) + %s::double precision)", [
            float(app_settings.CONNECT_TIMEOUT),
            float(app_settings.LEASE_MARGIN),
        ]

    def claim_filters(self) -> dict[str, Any]:
        return {"lease_expires_at__isnull": True}  # no poll in flight on another worker

    def claim_where_sql(self) -> str:
        return "lease_expires_at IS NULL"

    def released(self) -> dict[str, Any]:
        return {"leased_by": "", "lease_expires_at": None}

    def decide(self, row: PollingTask, call: CallOutcome, now: datetime) -> Outcome:
        config = row.poll_config or {}
        record = {
            "poll_count": row.poll_count + 1,
            "last_polled_at": now,
            "last_poll_status_code": call.status_code,
            "last_poll_error": "",
        }
        if call.error_kind in ("blocked", "invalid"):
            # The poll URL may not be called (the SSRF guard): no later poll can succeed.
            error = _clip(f"Poll refused: {call.describe()}")
            return Outcome(
                TaskStatus.FAILED,
                {**record, "last_poll_error": error, "error": error, "completed_at": now},
                attempt_outcome=AttemptOutcome.FAILED,
            )
        if call.error:
            reading = providers.Reading(providers.ERROR, f"the poll failed: {call.describe()}")
        else:
            reading = providers.read_poll(config, call.status_code, call.body, call.truncated)
        if reading.state == providers.DONE:
            value = reading.value
            if config.get(RESOLVED, {}).get("resultUrl"):
                value, problem = _fetched_result(call)
                if problem:
                    reading = providers.Reading(providers.ERROR, problem)
            if reading.state == providers.DONE:
                try:
                    check_json_value(value)
                except (ValueError, RecursionError):
                    value = str(value)
                return Outcome(
                    TaskStatus.COMPLETED,
                    {**record, "result": value, "completed_at": now},
                    attempt_outcome=AttemptOutcome.SUCCEEDED,
                )
        if reading.state == providers.FAILED:
            return Outcome(
                TaskStatus.FAILED,
                {**record, "error": _clip(str(reading.value)), "completed_at": now},
                attempt_outcome=AttemptOutcome.FAILED,
            )
        if reading.state == providers.ERROR:
            record["last_poll_error"] = _clip(str(reading.value))
        return self._again(row, record, now)

    def _again(self, row: PollingTask, record: dict[str, Any], now: datetime) -> Outcome:
        """Poll again after ``interval``, or ``timeout`` once the deadline has come."""
        config = row.poll_config or {}
        deadline = row.wait_deadline or now
        if now >= deadline:
            error = poll_timeout_error(config.get("maxDuration"))
            return Outcome(
                TaskStatus.TIMEOUT,
                {**record, "error": error, "completed_at": now},
                attempt_outcome=AttemptOutcome.FAILED,
            )
        fields = {**record, **_next_poll(config, now, deadline)}
        countdown = (fields["next_attempt_at"] - now).total_seconds()
        short = fields["dispatched_at"] is not None
        return Outcome(
            TaskStatus.POLLING,
            fields,
            max(countdown, 0.0) if short else None,
            AttemptOutcome.RETRYING,
        )

    def decide_lost(self, row: PollingTask, now: datetime) -> Outcome:
        # The worker died mid-poll: counted as a failed poll, and polled again at once.
        record = {
            "poll_count": row.poll_count + 1,
            "last_polled_at": now,
            "last_poll_status_code": None,
            "last_poll_error": engine.WORKER_LOST,
        }
        deadline = row.wait_deadline or now
        if now >= deadline:
            return self._again(row, record, now)
        return Outcome(
            TaskStatus.POLLING,
            {**record, "next_attempt_at": now, "dispatched_at": now},
            0.0,
            AttemptOutcome.WORKER_LOST,
        )

    def record_attempt(self, row: PollingTask, attempt: AttemptRecord) -> None:
        """A poll is recorded on the task itself (the outcome's fields), not as a row."""

    def after_move(self, row: PollingTask, to: str, now: datetime) -> None:
        if states.is_terminal(to):
            on_terminal(row.pk, TaskStatus(to), row.on_complete_url, now)

    def terminal_rows(
        self, row: PollingTask, to: str, now: datetime
    ) -> tuple[list[models.Model], Callable[[], None] | None]:
        if not states.is_terminal(to):
            return [], None
        events, announce = terminal_rows(row.pk, TaskStatus(to), row.on_complete_url, now)
        return list(events), announce


POLLS = Polls()


def publish_first_poll(task: Task) -> None:
    """Once the move to ``polling`` commits, send the first poll's message with its countdown
    (``interval``), unless that is long enough to wait for the due sweep (see
    :func:`_next_poll`)."""
    interval = float((task.poll_config or {}).get("interval", 0))
    if interval <= app_settings.COUNTDOWN_MAX:
        POLLS.publish_on_commit(task.pk, task, countdown=interval)  # type: ignore[arg-type]


def claim_poll(task_id: Any, worker: str, now: datetime | None = None) -> PollingTask | None:
    """A polling task whose next poll is due → leased to ``worker`` for one poll (the status
    stays ``polling``); None if not claimable (a duplicate or late message, a poll in flight
    elsewhere, or the task resolved meanwhile)."""
    return engine.claim(POLLS, task_id, worker, now or timezone.now())


def claim_due_polls(
    queue: str,
    worker: str,
    now: datetime | None = None,
    limit: int | None = None,
    due_by: datetime | None = None,
) -> list[PollingTask]:
    """Up to ``limit`` (default ``BATCH_SIZE``) polling tasks of ``queue`` whose next poll is
    due and not in flight, highest priority first, each leased to ``worker`` for one poll
    (what a wake-up message runs; ``due_by`` is the time it was sent for, see
    :func:`engine.claim_batch`). An empty list is the normal answer to a duplicate wake-up."""
    size = app_settings.BATCH_SIZE if limit is None else limit
    return engine.claim_batch(POLLS, queue, worker, now or timezone.now(), size, due_by)


def finish_polls(
    batch: list[tuple[PollingTask, CallOutcome]], *, worker: str, now: datetime | None = None
) -> list[TaskStatus | None]:
    """:func:`finish_poll` for the polls of a batch; each new status, or None where the
    worker no longer held the lease."""
    statuses = engine.finish_many(
        POLLS, [(t, c, None) for t, c in batch], worker=worker, now=now or timezone.now()
    )
    return [None if s is None else TaskStatus(s) for s in statuses]


def finish_poll(
    task: PollingTask, call: CallOutcome, *, worker: str, now: datetime | None = None
) -> TaskStatus | None:
    """Record the poll a worker made after :func:`claim_poll` and move the task on:

    - the job done → ``completed`` with the value at ``resultPath``, the body fetched from the
      result URL, or the whole poll answer;
    - the job failed → ``failed`` with the text at ``errorPath`` (or the status the provider
      gave);
    - still running, or an answer that could not be read (not 2xx, not JSON, no
      ``statusPath``, a network error) → ``polling``, the next poll after ``interval``; once
      ``maxDuration`` has passed → ``timeout``;
    - a poll URL the SSRF guard refuses → ``failed`` at once.

    Returns the new status, or None when the worker no longer holds the lease (the task was
    resolved, cancelled, or recovered meanwhile): then nothing is written.
    """
    status = engine.finish(POLLS, task, call, worker=worker, now=now or timezone.now())
    return None if status is None else TaskStatus(status)
