"""Task callbacks as a kind of outbound work: claim a due task, record what its target
answered, and decide what comes next (done, waiting for a signal, a retry, or failed).

The claim/lease/finish/recover mechanics are the shared engine's (``engine.py``); this module
is the adapter that says what a callback's outcome means.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.utils import timezone

from asyncqueue_django import states
from asyncqueue_django.backoff import retry_delay
from asyncqueue_django.conf import app_settings
from asyncqueue_django.jsonvalue import check_json_value, redact_headers, storable_text
from asyncqueue_django.models import Attempt, Task
from asyncqueue_django.services import engine, flow, polls
from asyncqueue_django.services.engine import AttemptRecord, Outcome, WorkKind
from asyncqueue_django.services.tables import TASKS
from asyncqueue_django.services.terminal import on_terminal, terminal_rows
from asyncqueue_django.states import AttemptOutcome, TaskStatus
from asyncqueue_django.values import CallOutcome, Message, RetryDecision


def _clean_text(raw: bytes, limit: int) -> str:
    """Response bytes as storable text: decoded leniently, NULs replaced, truncated."""
    return storable_text(raw[:limit].decode("utf-8", errors="replace"))


def delivered(call: CallOutcome) -> bool:
    """Whether a callback counts as delivered: a success, or, with ``COMPLETE_ON_CLIENT_ERROR``,
    a 4xx that is not retried (the target answered and refused; the hosted service counts that
    as ``completed``). The one place this rule lives."""
    if call.succeeded:
        return True
    code = call.status_code
    return bool(
        app_settings.COMPLETE_ON_CLIENT_ERROR
        and code is not None
        and 400 <= code < 500
        and not call.error
        and not call.retryable
    )


def _result_body(call: CallOutcome, limit: int) -> Any:
    """The response body for ``result.body``: parsed JSON when it is complete JSON, else text."""
    content_type = call.headers.get("Content-Type", call.headers.get("content-type", ""))
    return result_body(call.body, content_type, call.truncated, limit)


def result_body(raw: bytes, content_type: str, truncated: bool, limit: int) -> Any:
    """A body as a result stores it (a callback's answer, a provider's call to a callback
    URL): parsed JSON when it says it is JSON and is complete, else text (at most ``limit``
    bytes)."""
    if "json" in content_type.lower() and not truncated and len(raw) <= limit:
        try:
            value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
            check_json_value(value)
            return value
        except (ValueError, RecursionError):
            pass
    return _clean_text(raw, limit)


#: The result of a sandbox task's callback (a task created with a test key never calls its
#: target: the worker records this answer instead; see ``tasks._callback``).
SANDBOX_RESULT: dict[str, Any] = {"statusCode": 200, "sandbox": True}


def _reject_constant(value: str) -> Any:
    raise ValueError(value)


class Callbacks(WorkKind[Task]):
    """One HTTP call to a task's target per attempt."""

    name = "task"
    task_name = "asyncqueue.execute_task"
    table = TASKS
    related = ("team",)
    claim_from = states.RUNNABLE
    claim_to = TaskStatus.PROCESSING
    in_flight = states.IN_FLIGHT
    message_fields = ("queue", "priority", "flow_key")
    wakes = True

    def message(self, pk: Any, *values: Any, countdown: float = 0) -> Message:
        queue, priority, *flow_key = values
        if flow_key and flow_key[0] is not None:
            # A flow-controlled task starts with its key's others, as its limits allow: its
            # message is a wake-up for its queue (a sweep sends identical ones once), so a key's
            # backlog re-sent by a sweep is a few messages, not one claim per task.
            return self.wake_message(queue, priority, countdown)
        return Message(self.task_name, (str(pk),), queue, priority, countdown)

    def wake_target(self, *values: Any) -> tuple[str, int]:
        queue, priority = values[:2]  # (the flow key, if any, is claimed by the same wake-up)
        return str(queue), int(priority)

    def lease_seconds(self, row: Task) -> float:
        # http.call bounds a whole attempt (all redirect hops) by timeout + connect timeout.
        return float(row.timeout + app_settings.CONNECT_TIMEOUT + app_settings.LEASE_MARGIN)

    def on_claim(self, row: Task, now: datetime) -> dict[str, Any]:
        return {"started_at": row.started_at or now}

    def retry_policy(self, task: Task, retry_after: float | None) -> RetryDecision:
        """The task's own backoff (``Retry-After`` capped by ``RETRY_AFTER_MAX``), while
        retries are left."""
        retry_number = task.retry_count + 1
        if task.retry_count >= task.max_retries:
            return RetryDecision(retry_number, None, None)
        capped = None if retry_after is None else min(retry_after, app_settings.RETRY_AFTER_MAX)
        delay = retry_delay(
            task.retry_backoff,
            retry_number,
            base=app_settings.RETRY_BASE_DELAY,
            max_delay=app_settings.RETRY_MAX_DELAY,
            jitter=app_settings.RETRY_JITTER,
            retry_after=capped,
        )
        return self.retry_decision(retry_number, delay)

    def fail_or_retry(
        self, task: Task, reason: str, retryable: bool, retry_after: float | None, now: datetime
    ) -> Outcome:
        if retryable:
            decision = self.retry_policy(task, retry_after)
            if decision.retry:
                return Outcome(
                    TaskStatus.DELAYED,
                    self.retry_fields(decision, now),
                    decision.countdown,
                    AttemptOutcome.RETRYING,
                )
        attempts = task.retry_count + 1
        error = (
            f"{reason} after {attempts} attempt{'s' if attempts != 1 else ''}"
            if retryable
            else f"{reason} (not retried)"
        )
        return Outcome(
            TaskStatus.FAILED, {"error": error, "completed_at": now}, None, AttemptOutcome.FAILED
        )

    def success(self, task: Task, call: CallOutcome, now: datetime) -> Outcome:
        if task.early_signal_status:
            # A signal arrived while the callback ran: go straight to its outcome.
            return Outcome(
                TaskStatus(task.early_signal_status),
                {
                    "result": task.early_signal_result,
                    "error": task.early_signal_error,
                    "completed_at": now,
                },
                attempt_outcome=AttemptOutcome.SUCCEEDED,
            )
        limit = app_settings.MAX_STORED_RESPONSE_BYTES
        result: dict[str, Any] = (
            dict(SANDBOX_RESULT)
            if task.sandbox
            else {
                "statusCode": call.status_code,
                "headers": redact_headers(call.headers),
                "body": _result_body(call, limit),
                "duration": call.duration_ms,
            }
        )
        if task.poll_config is not None and not task.sandbox:
            # The submit call of a provider job: poll the provider from now on.
            return polls.start_polling(task, call, result, now)
        if task.wait_for_signal:
            fields = {
                "result": result,
                "wait_deadline": now + timedelta(seconds=task.max_wait_time),
            }
            return Outcome(TaskStatus.WAITING, fields, attempt_outcome=AttemptOutcome.SUCCEEDED)
        return Outcome(
            TaskStatus.COMPLETED,
            {"result": result, "completed_at": now},
            attempt_outcome=AttemptOutcome.SUCCEEDED,
        )

    def decide(self, row: Task, call: CallOutcome, now: datetime) -> Outcome:
        if delivered(call):
            return self.success(row, call, now)
        return self.fail_or_retry(row, call.describe(), call.retryable, call.retry_after, now)

    def decide_lost(self, row: Task, now: datetime) -> Outcome:
        outcome = self.fail_or_retry(row, "worker lost", True, None, now)
        outcome.attempt_outcome = AttemptOutcome.WORKER_LOST
        return outcome

    def attempt_row(self, row: Task, attempt: AttemptRecord) -> Attempt:
        call, limit = attempt.call, app_settings.MAX_STORED_RESPONSE_BYTES
        return Attempt(
            task_id=row.pk,
            number=attempt.number,
            started_at=attempt.started_at,
            duration_ms=attempt.duration_ms,
            status_code=attempt.status_code,
            # What the target answered, made storable (headers redacted, text cleaned).
            response_headers=redact_headers(call.headers) if call else {},
            response_body=_clean_text(call.body, limit) if call else "",
            error=attempt.error,
            outcome=attempt.outcome,
            worker=attempt.worker,
        )

    def after_move(self, row: Task, to: str, now: datetime) -> None:
        if states.is_terminal(to):
            on_terminal(row.pk, TaskStatus(to), row.on_complete_url, now)
        elif to == TaskStatus.POLLING:
            polls.publish_first_poll(row)

    def terminal_rows(
        self, row: Task, to: str, now: datetime
    ) -> tuple[list[models.Model], Callable[[], None] | None]:
        if to == TaskStatus.POLLING:
            return [], functools.partial(polls.publish_first_poll, row)
        if not states.is_terminal(to):
            return [], None
        events, announce = terminal_rows(row.pk, TaskStatus(to), row.on_complete_url, now)
        return list(events), announce

    def finish_guard(self, row: Task) -> dict[str, Any]:
        # A signal recorded while the call ran changes what a success means.
        return {"early_signal_status": row.early_signal_status}

    def lease_sql(self) -> tuple[str, list[Any]]:
        extra = app_settings.CONNECT_TIMEOUT + app_settings.LEASE_MARGIN
        return "(timeout + %s::double precision)", [float(extra)]

    def claim_sql(self, now: datetime) -> tuple[list[str], list[Any]]:
        return ["started_at = COALESCE(started_at, %s)"], [now]

    # Flow control and paused queues (``flow.py``): the fast claim takes neither a task with a
    # flow key nor one on a paused queue; flow-controlled tasks are claimed key by key.

    def gate_sql(self, table: str) -> str:
        return flow.gate_sql(table, engine.connection_of(self))

    def gate_q(self) -> list[Any]:
        return flow.gate_q()

    def claim_gated(self, pk: Any, worker: str, now: datetime) -> Task | None:
        return flow.claim_gated(self, pk, worker, now)

    def claim_gated_batch(self, queue: str, worker: str, now: datetime, limit: int) -> list[Task]:
        return flow.claim_gated_batch(self, queue, worker, now, limit)

    def gated_due_sql(self, queue: str, now: datetime) -> tuple[str, list[Any]]:
        return flow.due_probe_sql(engine.connection_of(self), queue, now)

    def batch_filters(self, queue: str) -> tuple[dict[str, Any], str, list[Any], str]:
        # Higher priority first, then the longest due.
        return {"queue": queue}, "queue = %s", [queue], "priority DESC, next_attempt_at"


CALLBACKS = Callbacks()


def enqueue(task_id: str, queue: str, priority: int, countdown: float = 0) -> bool:
    """Send the execution message of a task now. False (logged) if the broker refused it: the
    row is committed, and the recovery sweep re-sends it after ``DISPATCH_GRACE``."""
    return engine.publish(CALLBACKS.message(task_id, queue, priority, countdown=countdown))


def claim_task(task_id: Any, worker: str, now: datetime | None = None) -> Task | None:
    """``pending``/``delayed`` (and due) → ``processing`` with a lease; None if not claimable.

    None is the normal answer to a duplicate or late message: the task was claimed by someone
    else, has finished, was cancelled, or is not due yet.
    """
    return engine.claim(CALLBACKS, task_id, worker, now or timezone.now())


def claim_due_tasks(
    queue: str,
    worker: str,
    now: datetime | None = None,
    limit: int | None = None,
    due_by: datetime | None = None,
) -> list[Task]:
    """Up to ``limit`` (default ``BATCH_SIZE``) due ``pending``/``delayed`` tasks of ``queue``,
    highest priority first, each → ``processing`` with its own lease (what a wake-up message
    runs; ``due_by`` is the time it was sent for, see :func:`engine.claim_batch`). An empty
    list is the normal answer to a duplicate wake-up."""
    size = app_settings.BATCH_SIZE if limit is None else limit
    return engine.claim_batch(CALLBACKS, queue, worker, now or timezone.now(), size, due_by)


def finish_attempt(
    task: Task, call: CallOutcome, *, worker: str, now: datetime | None = None
) -> TaskStatus | None:
    """Record the attempt a worker made after :func:`claim_task` and move the task on:

    - 2xx → ``completed`` (or ``waiting`` when it waits for a signal, or straight to an early
      signal's outcome);
    - retryable failure with retries left → ``delayed`` until the backoff has passed;
    - otherwise → ``failed`` with a readable error ("HTTP 503 after 4 attempts").

    Returns the new status, or None when the worker no longer holds the claim (its lease
    expired and the recovery sweep took the task over): then nothing is written.
    """
    status = engine.finish(CALLBACKS, task, call, worker=worker, now=now or timezone.now())
    flow.wake_after_finish(CALLBACKS, [task])
    return None if status is None else TaskStatus(status)


def finish_attempts(
    batch: list[tuple[Task, CallOutcome]], *, worker: str, now: datetime | None = None
) -> list[TaskStatus | None]:
    """:func:`finish_attempt` for the attempts of a batch at once (one commit); each new
    status, or None where the worker no longer held the claim."""
    statuses = engine.finish_many(
        CALLBACKS, [(t, c, None) for t, c in batch], worker=worker, now=now or timezone.now()
    )
    flow.wake_after_finish(CALLBACKS, [t for t, _ in batch])
    return [None if s is None else TaskStatus(s) for s in statuses]
