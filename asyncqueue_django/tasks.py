"""Celery task definitions only: each takes ids, and reports back through ``services``.

Every task is idempotent: it re-reads the row and does nothing if the work is already done or
someone else holds it, so duplicate and late messages are harmless. Requests are built by
``outbound.py`` and sent by ``http.py``; messages are published by ``broker.py``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from celery import shared_task
from celery.signals import task_prerun
from django.db import connections

from asyncqueue_django import http, outbound, services, tracing
from asyncqueue_django.conf import app_settings

logger = logging.getLogger(__name__)
_R = TypeVar("_R")


@task_prerun.connect(weak=False)
def _drop_broken_connections(sender: Any = None, **kwargs: Any) -> None:
    """Before each of our tasks, close database connections that no longer answer (one cheap
    ``SELECT 1`` per open connection; the task then opens a fresh one).

    Celery's Django fixup keeps connections for ``CELERY_DB_REUSE_MAX`` tasks; without this a
    connection the database dropped (failover, restart, ``pg_terminate_backend``) would fail
    every task of that worker thread until the fixup recycles it hundreds of tasks later.
    Connections are not closed for their age here (``close_old_connections`` would, with
    ``CONN_MAX_AGE = 0``, reconnect before every task and undo ``CELERY_DB_REUSE_MAX``).
    """
    if not getattr(sender, "name", "").startswith("asyncqueue."):
        return
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block and not conn.is_usable():
            conn.close()


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
    Only when the database refuses even the short record is the attempt left to the lease.
    """
    try:
        return finish(work, result, **kwargs)
    except Exception as exc:
        logger.exception(
            "%s: could not record the attempt; recording it without the response", work
        )
        for conn in connections.all(initialized_only=True):
            if not conn.in_atomic_block:
                conn.close_if_unusable_or_obsolete()
        return finish(work, services.without_response(result, type(exc).__name__), **kwargs)


@shared_task(name="asyncqueue.execute_task", ignore_result=True)
def execute_task(task_id: str) -> str | None:
    """Claim the task, call its target once, and record the outcome. Returns the new status.

    Whatever happens after the claim, the attempt is recorded before this returns.
    """
    me = worker_id()
    claim_started = tracing.now_ns()
    task = services.claim_task(task_id, worker=me)
    if task is None:
        logger.debug("Task %s is not claimable (duplicate or late message)", task_id)
        return None
    trace = (task.traceparent, task.tracestate)
    tracing.record("asyncqueue.claim", *trace, start_ns=claim_started, task_id=task_id)
    try:
        with tracing.span("asyncqueue.call", *trace, {"asyncqueue.task_id": task_id}):
            headers, body = outbound.build_callback(task)
            result = http.call(
                task.method, task.target_url, headers=headers, body=body, timeout=task.timeout
            )
    except Exception as exc:
        result = _failed_to_call("Task", task_id, exc)
    with tracing.span("asyncqueue.finish", *trace, {"asyncqueue.task_id": task_id}):
        status = _record(services.finish_attempt, task, result, worker=me)
    logger.info(
        "Task %s attempt %s: %s -> %s", task_id, task.attempt_count, result.describe(), status
    )
    return status


@shared_task(name="asyncqueue.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id: str) -> str | None:
    """Claim the webhook event, POST it to its URL once, and record the outcome (the task is
    never changed). Returns the event's new delivery status.

    Whatever happens after the claim, the attempt is recorded before this returns.
    """
    me = worker_id()
    delivery = services.claim_webhook(delivery_id, worker=me)
    if delivery is None:
        logger.debug("Webhook %s is not claimable (duplicate or late message)", delivery_id)
        return None
    body = ""
    task = delivery.task
    try:
        body = outbound.render_webhook(delivery)
        with tracing.span("asyncqueue.webhook", task.traceparent, task.tracestate):
            result = http.call(
                "POST",
                delivery.url,
                headers=outbound.build_webhook(delivery, body),
                body=body.encode("utf-8"),
                timeout=app_settings.WEBHOOK_TIMEOUT,
            )
    except Exception as exc:
        result = _failed_to_call("Webhook", delivery_id, exc)
    status = _record(services.finish_webhook_attempt, delivery, result, worker=me, body=body)
    logger.info(
        "Webhook %s (%s of task %s) attempt %s: %s -> %s",
        delivery_id,
        delivery.event,
        delivery.task_id,
        delivery.attempt_count,
        result.describe(),
        status,
    )
    return status


@shared_task(name="asyncqueue.dispatch_due", ignore_result=True)
def dispatch_due() -> dict[str, int]:
    """Beat: send delayed tasks and webhook re-deliveries whose long delay has passed."""
    return {"tasks": services.dispatch_due(), "webhooks": services.dispatch_due_webhooks()}


@shared_task(name="asyncqueue.expire_waits", ignore_result=True)
def expire_waits() -> int:
    """Beat: time out waiting tasks whose ``waitDeadline`` has passed."""
    return services.expire_overdue()


@shared_task(name="asyncqueue.recover", ignore_result=True)
def recover() -> dict[str, int]:
    """Beat: recover tasks and webhook events of dead workers, and re-send the ones whose
    message was lost."""
    return {
        "stale_leases": services.recover_stale_leases(),
        "redispatched": services.redispatch_lost(),
        "stale_webhooks": services.recover_stale_webhooks(),
        "redispatched_webhooks": services.redispatch_lost_webhooks(),
    }
