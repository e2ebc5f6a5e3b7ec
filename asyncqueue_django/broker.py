"""Publishing to the broker: one function for every kind of outbound work, by Celery task name
(so the write path never imports the task definitions), with one bounded retry policy and the
mapping of the API's priority onto the broker's own scale.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import current_app

from asyncqueue_django.values import Message

# Broker transports that order by a message priority, and which way round they count.
_HIGH_FIRST = {"amqp"}  # RabbitMQ: 0..x-max-priority, higher first
_LOW_FIRST = {"redis"}  # Celery's Redis transport: 0 is served first

#: One quick retry when publishing: a broker that is down must not hold an API request for
#: seconds (the row is committed; the recovery sweep re-sends what could not be published).
#: Every kind of message uses it (task callbacks and webhook events alike).
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}


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


def publish(message: Message) -> None:
    """Send ``message`` to its queue. Raises when the broker refuses it (after the one retry)."""
    conf = current_app.conf
    options: dict[str, Any] = {"queue": message.queue} if message.queue else {}
    mapped = broker_priority(
        message.priority, _driver_type(conf.broker_url or "memory://", conf.broker_transport)
    )
    if mapped is not None:
        options["priority"] = mapped
    if message.countdown > 0:
        options["countdown"] = message.countdown
    current_app.send_task(
        message.task_name, args=message.args, retry_policy=PUBLISH_RETRY, **options
    )
