"""Celery task definitions only: each takes ids, and reports back through ``services``.

Every task is idempotent: it re-reads the row and does nothing if the work is already done or
someone else holds it, so duplicate and late messages are harmless. Requests are built by
``outbound.py`` and sent by ``http.py``; messages are published by ``broker.py``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from celery import shared_task
from django.db import DatabaseError, connections

from asyncqueue_django import http, outbound, providers, services, tracing
from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import TokenRevoked

if TYPE_CHECKING:
    from asyncqueue_django.models import Task, WebhookDelivery

logger = logging.getLogger(__name__)
_R = TypeVar("_R")


def _drop_broken_connections() -> bool:
    """Close this thread's database connections that no longer answer (one ``SELECT 1`` per
    connection that saw an error); True if one was closed, so the next query opens a new one."""
    dropped = False
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block and not conn.is_usable():
            conn.close()
            dropped = True
    return dropped


def _db(step: Callable[..., _R], *args: Any, **kwargs: Any) -> _R:
    """Run a database step; if it fails on a connection the database dropped (failover,
    restart, ``pg_terminate_backend``), run it once more on a fresh connection.

    Celery's Django fixup keeps connections for ``CELERY_DB_REUSE_MAX`` tasks, so a dropped
    one would otherwise fail every task of its thread until it is recycled. Checking after an
    error, not before each task, keeps a healthy worker at no extra round trip per task.
    """
    try:
        return step(*args, **kwargs)
    except DatabaseError:
        if not _drop_broken_connections():
            raise
        logger.warning("A database connection was dropped; retrying on a new one")
        return step(*args, **kwargs)


def worker_id() -> str:
    """Who holds a claim: host and process (read per call: prefork children fork later)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _failed_to_call(what: str, work_id: Any, exc: Exception) -> http.CallResult:
    """The outcome of an attempt whose request could not even be made (a value that cannot
    be sent, a bug): recorded at once as a failed attempt, never left to the lease."""
    logger.error("%s %s: the request could not be made", what, work_id, exc_info=exc)
    return http.CallResult(
        error=f"internal error: the request could not be made ({type(exc).__name__})",
        error_kind="internal",
    )


def _record(finish: Callable[..., _R], work: Any, result: http.CallResult, **kwargs: Any) -> _R:
    """Record an attempt with ``finish``; if that fails, record it again without the response.

    The attempt was made (a target that answered 2xx has done its work), so its outcome must
    be written now: left to the lease, the recovery sweep would call the target a second time.
    A connection the database dropped is replaced and the same record written; only when the
    database refuses even the short record is the attempt left to the lease.
    """
    try:
        return finish(work, result, **kwargs)
    except Exception as exc:
        error = exc
    if isinstance(error, DatabaseError) and _drop_broken_connections():
        try:
            return finish(work, result, **kwargs)
        except Exception as exc:
            error = exc
    logger.error(
        "%s: could not record the attempt; recording it without the response",
        work,
        exc_info=error,
    )
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
    return finish(work, services.without_response(result, type(error).__name__), **kwargs)


def _callback(task: Task) -> Callable[[], http.CallResult]:
    """The call of one attempt of ``task`` (never raises: a request that cannot be made is a
    failed attempt). The request is built here, where the database may be read (Token Vault
    secrets); the returned call only sends it.

    A sandbox task (created with a test key) never calls its target: it answers as a 2xx
    would. A header whose vault token was revoked fails the attempt without retry."""
    if task.sandbox:
        sandboxed = http.CallResult(status_code=200)
        return lambda: sandboxed
    try:
        headers, body = outbound.build_callback(task)
        url = outbound.target_url(task)
    except TokenRevoked as exc:
        # Not retried (error kind "vault"): no later attempt can have the secret back.
        revoked = http.CallResult(error=exc.message, error_kind="vault")
        return lambda: revoked
    except Exception as exc:
        failed = _failed_to_call("Task", task.pk, exc)
        return lambda: failed
    secret_headers = outbound.vault_headers(task)

    def run() -> http.CallResult:
        try:
            # The call is a span of the task's trace (OpenTelemetry installed), and the target
            # sees it as its parent.
            with tracing.span(
                "asyncqueue.call", *_trace(task), {"asyncqueue.task_id": str(task.pk)}
            ):
                outbound.refresh_trace_context(headers, task)
                return http.call(
                    task.method,
                    url,
                    headers=headers,
                    body=body,
                    timeout=task.timeout,
                    secret_headers=secret_headers,
                )
        except Exception as exc:
            return _failed_to_call("Task", task.pk, exc)

    return run


def _trace(task: Task) -> tuple[str, str]:
    return task.traceparent, task.tracestate


def _webhook(delivery: WebhookDelivery) -> tuple[str, Callable[[], http.CallResult]]:
    """The body of one delivery attempt (rendered here: it may read the database) and its
    POST (never raises)."""
    body = ""
    try:
        body = outbound.render_webhook(delivery)
        headers = outbound.build_webhook(delivery, body)
    except Exception as exc:
        failed = _failed_to_call("Webhook", delivery.pk, exc)
        return body, lambda: failed

    def run() -> http.CallResult:
        try:
            with tracing.span("asyncqueue.webhook", *_trace(delivery.task)):
                return http.call(
                    "POST",
                    delivery.url,
                    headers=headers,
                    body=body.encode("utf-8"),
                    timeout=app_settings.WEBHOOK_TIMEOUT,
                )
        except Exception as exc:
            return _failed_to_call("Webhook", delivery.pk, exc)

    return body, run


def _log_task(task: Task, result: http.CallResult, status: Any) -> None:
    logger.info(
        "Task %s attempt %s: %s -> %s", task.pk, task.attempt_count, result.describe(), status
    )


def _log_webhook(delivery: WebhookDelivery, result: http.CallResult, status: Any) -> None:
    logger.info(
        "Webhook %s (%s of task %s) attempt %s: %s -> %s",
        delivery.pk,
        delivery.event,
        delivery.task_id,
        delivery.attempt_count,
        result.describe(),
        status,
    )


@shared_task(name="asyncqueue.execute_task", ignore_result=True)
def execute_task(task_id: str) -> str | None:
    """Claim the task, call its target once, and record the outcome. Returns the new status.

    Whatever happens after the claim, the attempt is recorded before this returns.
    """
    me = worker_id()
    claim_started = tracing.now_ns()
    task = _db(services.claim_task, task_id, worker=me)
    if task is None:
        logger.debug("Task %s is not claimable (duplicate or late message)", task_id)
        return None
    tracing.record("asyncqueue.claim", *_trace(task), start_ns=claim_started, task_id=task_id)
    result = _callback(task)()
    with tracing.span("asyncqueue.finish", *_trace(task), {"asyncqueue.task_id": task_id}):
        status = _record(services.finish_attempt, task, result, worker=me)
    _log_task(task, result, status)
    return status


def _poll(task: Task) -> Callable[[], http.CallResult]:
    """One provider poll of ``task`` (never raises): GET the status URL and, when the answer
    says the job is done and a result URL was given, GET that too. A sandbox task never gets
    here (it completes without polling)."""
    try:
        url, headers, result_url = outbound.build_poll(task)
    except TokenRevoked as exc:
        revoked = http.CallResult(error=exc.message, error_kind="vault")
        return lambda: revoked
    except Exception as exc:
        failed = _failed_to_call("Poll of task", task.pk, exc)
        return lambda: failed
    secret_headers = outbound.vault_headers(task) | {"authorization"}

    def get(target: str, sent: dict[str, str]) -> http.CallResult:
        with tracing.span("asyncqueue.poll", *_trace(task), {"asyncqueue.task_id": str(task.pk)}):
            return http.call(
                "GET",
                target,
                headers=dict(sent),
                body=None,
                timeout=task.timeout,
                secret_headers=secret_headers,
            )

    def run() -> http.CallResult:
        try:
            answer = get(url, headers)
            fetched = None
            config = task.poll_config or {}
            if result_url and not answer.error:
                reading = providers.read_poll(
                    config, answer.status_code, answer.body, answer.truncated
                )
                if reading.state == providers.DONE:
                    fetched = get(result_url, outbound.build_result_fetch(task))
            return http.PollResult(**vars(answer), fetched=fetched)
        except Exception as exc:
            return _failed_to_call("Poll of task", task.pk, exc)

    return run


@shared_task(name="asyncqueue.poll_task", ignore_result=True)
def poll_task(task_id: str) -> str | None:
    """Claim a polling task whose next poll is due, poll its provider once, and record what
    the answer says (the job done, failed, still running). Returns the new status.

    Whatever happens after the claim, the poll is recorded before this returns.
    """
    me = worker_id()
    task = _db(services.claim_poll, task_id, worker=me)
    if task is None:
        logger.debug("Task %s has no poll due (duplicate or late message)", task_id)
        return None
    result = _poll(task)()
    status = _record(services.finish_poll, task, result, worker=me)
    _log_poll(task, result, status)
    return status


def _log_poll(task: Task, result: http.CallResult, status: Any) -> None:
    logger.info(
        "Task %s poll %s: %s -> %s", task.pk, task.poll_count + 1, result.describe(), status
    )


@shared_task(name="asyncqueue.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id: str) -> str | None:
    """Claim the webhook event, POST it to its URL once, and record the outcome (the task is
    never changed). Returns the event's new delivery status.

    Whatever happens after the claim, the attempt is recorded before this returns.
    """
    me = worker_id()
    delivery = _db(services.claim_webhook, delivery_id, worker=me)
    if delivery is None:
        logger.debug("Webhook %s is not claimable (duplicate or late message)", delivery_id)
        return None
    body, run = _webhook(delivery)
    result = run()
    status = _record(services.finish_webhook_attempt, delivery, result, worker=me, body=body)
    _log_webhook(delivery, result, status)
    return status


#: Threads that make the calls of batches (per worker process, shared by its batches, started
#: as needed). Enough for 16 worker threads with full batches of 16, so each call starts at
#: once and runs on its own deadline; beyond that, calls wait for a free thread.
CALL_THREADS = 256

_calls: tuple[int, ThreadPoolExecutor] | None = None
_calls_lock = threading.Lock()


def _call_pool() -> ThreadPoolExecutor:
    global _calls
    with _calls_lock:
        if _calls is None or _calls[0] != os.getpid():  # a forked child makes its own
            _calls = (os.getpid(), ThreadPoolExecutor(CALL_THREADS, "asyncqueue-call"))
        return _calls[1]


@dataclass(frozen=True)
class _Kind:
    """What a wake-up does for one kind of work: claim a batch, build each call, record the
    outcomes of several at once (or of one, the fallback), and log each."""

    claim: Callable[[str, str, datetime | None], list[Any]]  # (queue, worker, due by) → rows
    build: Callable[[Any], tuple[str, Callable[[], http.CallResult]]]  # row → (body, call)
    finish_many: Callable[[list[tuple[Any, http.CallResult, str]], str], list[Any]]
    finish_one: Callable[[Any, http.CallResult, str, str], Any]
    log: Callable[[Any, http.CallResult, Any], None]
    traced: bool = False  # claim and finish spans (a task's callback)


def _finish_tasks(done: list[tuple[Any, http.CallResult, str]], me: str) -> list[Any]:
    return services.finish_attempts([(work, result) for work, result, _ in done], worker=me)


def _finish_polls(done: list[tuple[Any, http.CallResult, str]], me: str) -> list[Any]:
    return services.finish_polls([(work, result) for work, result, _ in done], worker=me)


def _finish_webhooks(done: list[tuple[Any, http.CallResult, str]], me: str) -> list[Any]:
    return services.finish_webhook_attempts([(w, r, body) for w, r, body in done], worker=me)


#: The kinds a wake-up (``asyncqueue.run_due``) runs, by the name in its message.
_KINDS: dict[str, _Kind] = {
    "task": _Kind(
        claim=lambda queue, me, due: _db(services.claim_due_tasks, queue, me, due_by=due),
        build=lambda task: ("", _callback(task)),
        finish_many=_finish_tasks,
        finish_one=lambda task, result, me, _: _record(
            services.finish_attempt, task, result, worker=me
        ),
        log=lambda task, result, status: _log_task(task, result, status),
        traced=True,
    ),
    "poll": _Kind(
        claim=lambda queue, me, due: _db(services.claim_due_polls, queue, me, due_by=due),
        build=lambda task: ("", _poll(task)),
        finish_many=_finish_polls,
        finish_one=lambda task, result, me, _: _record(
            services.finish_poll, task, result, worker=me
        ),
        log=lambda task, result, status: _log_poll(task, result, status),
    ),
    "webhook": _Kind(
        claim=lambda queue, me, due: _db(services.claim_due_webhooks, me, due_by=due),
        build=_webhook,
        finish_many=_finish_webhooks,
        finish_one=lambda delivery, result, me, body: _record(
            services.finish_webhook_attempt, delivery, result, worker=me, body=body
        ),
        log=lambda delivery, result, status: _log_webhook(delivery, result, status),
    ),
}


def _due_by(value: str | None) -> datetime | None:
    """A wake-up's ``due_by`` (epoch seconds as text) as a time; None if absent or unreadable
    (the claim then allows for clock skew, as for a wake-up from an older release)."""
    try:
        return datetime.fromtimestamp(float(value), tz=UTC) if value is not None else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


@shared_task(name="asyncqueue.run_due", ignore_result=True)
def run_due(kind: str, queue: str, due_by: str | None = None) -> int:
    """A wake-up: claim up to ``BATCH_SIZE`` rows of ``kind`` (``"task"``, ``"poll"`` or
    ``"webhook"``) on ``queue`` that are due by ``due_by`` (epoch seconds on the sender's
    clock) or by now, at once, make their calls concurrently, each with its own
    deadline (a slow target holds back no other call), and record the outcomes as the calls
    return — all that returned meanwhile in one transaction. Returns how many were run; 0 for
    a duplicate or late wake-up.

    Whatever happens after the claim, every attempt is recorded before this returns.
    """
    runner = _KINDS.get(kind)
    if runner is None:
        logger.warning("Wake-up for an unknown kind of work %r ignored", kind)
        return 0
    me = worker_id()
    claim_started = tracing.now_ns()
    jobs: list[_Job] = []
    for work in runner.claim(queue, me, _due_by(due_by)):
        if runner.traced:
            tracing.record(
                "asyncqueue.claim", *_trace(work), start_ns=claim_started, task_id=str(work.pk)
            )
        body, run = runner.build(work)
        jobs.append(_Job(work, run, body))
    if len(jobs) == 1:  # no hand-off for a batch of one
        _record_batch(runner, [(jobs[0], jobs[0].run())], me)
        return 1
    pool = _call_pool()
    futures = {pool.submit(job.run): job for job in jobs}
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        # Database writes stay on this thread (its connection).
        _record_batch(runner, [(futures[f], f.result()) for f in done], me)
    return len(jobs)


@dataclass(frozen=True)
class _Job:
    work: Any  # the claimed task or webhook event
    run: Callable[[], http.CallResult]
    body: str  # a webhook's body as sent ("" for the other kinds)


def _record_batch(runner: _Kind, done: list[tuple[_Job, http.CallResult]], me: str) -> None:
    """Record the attempts in ``done`` in one transaction; if that fails, each on its own
    (with :func:`_record`'s fallbacks), so one unstorable answer cannot lose the others."""
    finish_started = tracing.now_ns()
    try:
        statuses = runner.finish_many([(job.work, result, job.body) for job, result in done], me)
    except Exception:
        logger.warning("Could not record a batch of %s attempts; recording each", len(done))
        _drop_broken_connections()
        for job, result in done:
            runner.log(job.work, result, runner.finish_one(job.work, result, me, job.body))
        return
    for job, _ in done:
        if runner.traced:
            tracing.record(
                "asyncqueue.finish",
                *_trace(job.work),
                start_ns=finish_started,
                task_id=str(job.work.pk),
            )
    for (job, result), status in zip(done, statuses, strict=True):
        runner.log(job.work, result, status)


@shared_task(name="asyncqueue.dispatch_due", ignore_result=True)
def dispatch_due() -> dict[str, int]:
    """Beat: send delayed tasks, webhook re-deliveries and provider polls whose long delay has
    passed."""
    return {
        "tasks": _db(services.dispatch_due),
        "webhooks": _db(services.dispatch_due_webhooks),
        "polls": _db(services.dispatch_due_polls),
    }


@shared_task(name="asyncqueue.expire_waits", ignore_result=True)
def expire_waits() -> int:
    """Beat: time out waiting tasks whose ``waitDeadline`` has passed."""
    return _db(services.expire_overdue)


@shared_task(name="asyncqueue.recover", ignore_result=True)
def recover() -> dict[str, int]:
    """Beat: recover tasks, webhook events and provider polls of dead workers, and re-send the
    ones whose message was lost."""
    return {
        "stale_leases": _db(services.recover_stale_leases),
        "redispatched": _db(services.redispatch_lost),
        "stale_webhooks": _db(services.recover_stale_webhooks),
        "redispatched_webhooks": _db(services.redispatch_lost_webhooks),
        "stale_polls": _db(services.recover_stale_polls),
        "redispatched_polls": _db(services.redispatch_lost_polls),
    }


@shared_task(name="asyncqueue.run_schedule", ignore_result=True)
def run_schedule(schedule_id: str) -> str | None:
    """Beat, once per tick of a schedule (its ``PeriodicTask``): create the tick's task.

    A second beat or a duplicated message for the same tick creates nothing (the services
    take each tick once). Returns the new task's id, or None."""
    with tracing.span("asyncqueue.schedule", attributes={"asyncqueue.schedule_id": schedule_id}):
        task = _db(services.run_schedule, schedule_id)
    return str(task.pk) if task is not None else None


@shared_task(name="asyncqueue.drop_crontab", ignore_result=True)
def drop_crontab(crontab_id: str) -> bool:
    """A deleted schedule's crontab, some time after the schedule (see
    ``services.schedules._delete_beat_rows``): deleted unless a periodic task uses it."""
    return _db(services.drop_unused_crontab, crontab_id)
