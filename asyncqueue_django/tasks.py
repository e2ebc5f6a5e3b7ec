"""Celery tasks: thin wrappers that take ids only and report back through ``services.py``.

Every task is idempotent: it re-reads the row and does nothing if the work is already done or
someone else holds it, so duplicate and late messages are harmless.
"""

from __future__ import annotations

import functools
import logging
import socket
from typing import Any

from celery import current_app, shared_task

from asyncqueue_django import services

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{__import__('os').getpid()}"

# Broker transports that order by a message priority, and which way round they count.
_HIGH_FIRST = {"amqp"}  # RabbitMQ: 0..x-max-priority, higher first
_LOW_FIRST = {"redis"}  # Celery's Redis transport: 0 is served first


@functools.lru_cache(maxsize=8)
def _driver_type(broker_url: str) -> str:
    from kombu import Connection

    return str(Connection(broker_url).transport.driver_type)


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


def send_execute(task_id: str, *, queue: str, priority: int, countdown: float = 0) -> None:
    """Publish one execution message for ``task_id`` on its queue."""
    options: dict[str, Any] = {"queue": queue}
    mapped = broker_priority(priority, _driver_type(current_app.conf.broker_url or "memory://"))
    if mapped is not None:
        options["priority"] = mapped
    if countdown > 0:
        options["countdown"] = countdown
    execute_task.apply_async(args=(task_id,), **options)


@shared_task(name="asyncqueue.execute_task", ignore_result=True)
def execute_task(task_id: str) -> None:
    """Claim the task and call its target (the execution engine)."""
    task = services.claim_task(task_id, worker=WORKER_ID)
    if task is None:
        logger.debug("Task %s is not claimable (duplicate or late message)", task_id)
        return
