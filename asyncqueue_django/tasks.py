"""Celery tasks: thin wrappers that take ids only and report back through ``services.py``.

Every task is idempotent: it re-reads the row and does nothing if the work is already done or
someone else holds it, so duplicate and late messages are harmless.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from celery import current_app, shared_task
from celery.signals import task_prerun
from django.db import connections
from django.utils import timezone

from asyncqueue_django import http, services, signing
from asyncqueue_django.conf import app_settings
from asyncqueue_django.models import Task, WebhookDelivery

logger = logging.getLogger(__name__)
_R = TypeVar("_R")

# Broker transports that order by a message priority, and which way round they count.
_HIGH_FIRST = {"amqp"}  # RabbitMQ: 0..x-max-priority, higher first
_LOW_FIRST = {"redis"}  # Celery's Redis transport: 0 is served first


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


@functools.lru_cache(maxsize=8)
def _driver_type(broker_url: str, transport: str | None) -> str:
    from kombu import Connection

    return str(Connection(broker_url, transport=transport).transport.driver_type)


def broker_priority(priority: int, driver_type: str) -> int | None:
    """Map the API's priority (1..10, higher first) to the broker's own scale.

    RabbitMQ serves higher numbers first (queues declared with ``x-max-priority`` 10); the Redis
    transport serves 0 first (``priority_steps`` 0..9). Other transports ignore priority.
    """
    if driver_type in _HIGH_FIRST:
        return priority
    if driver_type in _LOW_FIRST:
        return 10 - priority
    return None


#: One quick retry when publishing: a broker that is down must not hold an API request for
#: seconds (the row is committed; the recovery sweep re-sends what could not be published).
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}


def send_execute(task_id: str, *, queue: str, priority: int, countdown: float = 0) -> None:
    """Publish one execution message for ``task_id`` on its queue."""
    options: dict[str, Any] = {"queue": queue}
    conf = current_app.conf
    driver = _driver_type(conf.broker_url or "memory://", conf.broker_transport)
    mapped = broker_priority(priority, driver)
    if mapped is not None:
        options["priority"] = mapped
    if countdown > 0:
        options["countdown"] = countdown
    execute_task.apply_async(args=(task_id,), retry_policy=PUBLISH_RETRY, **options)


def send_webhook(delivery_id: str, *, countdown: float = 0) -> None:
    """Publish one delivery message for the webhook event ``delivery_id``."""
    queue = app_settings.WEBHOOK_QUEUE
    options: dict[str, Any] = {"queue": queue}
    conf = current_app.conf
    mapped = broker_priority(5, _driver_type(conf.broker_url or "memory://", conf.broker_transport))
    if mapped is not None:
        options["priority"] = mapped
    if countdown > 0:
        options["countdown"] = countdown
    deliver_webhook.apply_async(args=(delivery_id,), **options)


def build_callback(task: Task) -> tuple[dict[str, str], bytes | None]:
    """Headers and body of the call to ``task.target_url`` (attempt ``task.attempt_count``),
    signed with the team's secrets (``webhook-id`` is ``<task id>-<attempt>``)."""
    headers = dict(task.headers)
    lower = {k.lower() for k in headers}
    body: bytes | None = None
    if task.method != "GET":
        if task.body is not None:
            body = task.body.encode("utf-8")
            if "content-type" not in lower:
                headers["Content-Type"] = "text/plain; charset=utf-8"
        elif task.payload is not None:
            body = json.dumps(task.payload, separators=(",", ":"), ensure_ascii=False).encode()
            if "content-type" not in lower:
                headers["Content-Type"] = "application/json"
    headers["X-AsyncQueue-Task-Id"] = str(task.pk)
    headers["X-AsyncQueue-Attempt"] = str(task.attempt_count)
    secrets = task.team.signing_secrets(timezone.now())
    headers.update(signing.sign(secrets, f"{task.pk}-{task.attempt_count}", body or b""))
    return headers, body


def render_webhook(delivery: WebhookDelivery) -> str:
    """The JSON body of an event: ``{"event": …, "task": <the API representation>}``.

    Rendered at the first attempt and then stored, so retries and re-sends carry the same
    bytes (and the task as it was when the event was first sent).
    """
    if delivery.body:
        return delivery.body
    from rest_framework.utils.encoders import JSONEncoder

    from asyncqueue_django.api.serializers import TaskSerializer

    data = {"event": delivery.event, "task": TaskSerializer(delivery.task).data}
    return json.dumps(data, cls=JSONEncoder, ensure_ascii=False, separators=(",", ":"))


def build_webhook(delivery: WebhookDelivery, body: str) -> dict[str, str]:
    """Headers of one delivery attempt: JSON, the event and task ids, and both signatures
    (``webhook-id`` is the event id, the same on every attempt and re-send)."""
    headers = {
        "Content-Type": "application/json",
        "X-AsyncQueue-Event": delivery.event,
        "X-AsyncQueue-Task-Id": str(delivery.task_id),
        "X-AsyncQueue-Delivery-Attempt": str(delivery.attempt_count),
    }
    secrets = delivery.task.team.signing_secrets(timezone.now())
    headers.update(signing.sign(secrets, str(delivery.pk), body.encode("utf-8")))
    return headers


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
    task = services.claim_task(task_id, worker=me)
    if task is None:
        logger.debug("Task %s is not claimable (duplicate or late message)", task_id)
        return None
    try:
        headers, body = build_callback(task)
        result = http.call(
            task.method, task.target_url, headers=headers, body=body, timeout=task.timeout
        )
    except Exception as exc:
        result = _failed_to_call("Task", task_id, exc)
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
    try:
        body = render_webhook(delivery)
        result = http.call(
            "POST",
            delivery.url,
            headers=build_webhook(delivery, body),
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
