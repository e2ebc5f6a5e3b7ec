"""The output representation of tasks, attempts and webhook deliveries, and the body of a
webhook event: one renderer for the API's answers and the worker's event bodies.

Dates are always ISO 8601 in UTC (``2026-01-02T03:04:05.123456Z``): the host's ``TIME_ZONE``
and ``REST_FRAMEWORK`` settings never change them. Plain dicts of JSON values, no DRF: the API
serializers describe this shape for the OpenAPI document and delegate here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asyncqueue_django.jsonvalue import redact_headers
from asyncqueue_django.states import DELIVERY_OPEN, POLL_OPEN, RUNNABLE

if TYPE_CHECKING:
    from asyncqueue_django.models import Attempt, Schedule, Task, VaultToken, WebhookDelivery
    from asyncqueue_django.values import QueueInfo


def iso_utc(value: datetime | None) -> str | None:
    """``value`` as ISO 8601 in UTC with a ``Z`` (None stays None)."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def task_data(task: Task) -> dict[str, Any]:
    """The public task object."""
    early = None
    if task.early_signal_status:
        # A signal that arrived before the callback finished (kept after it is applied).
        early = {
            "status": task.early_signal_status,
            "result": task.early_signal_result,
            "error": task.early_signal_error or None,
        }
    # Only meaningful while the task waits to run.
    next_attempt = task.next_attempt_at if task.status in RUNNABLE else None
    return {
        "id": str(task.id),
        "status": str(task.status),
        "targetUrl": task.target_url,
        "method": task.method,
        "headers": redact_headers(task.headers),
        "payload": task.payload,
        "body": task.body,
        "timeout": task.timeout,
        "delayUntil": iso_utc(task.delay_until),
        "priority": task.priority,
        "queue": task.queue,
        "maxRetries": task.max_retries,
        "retryBackoff": str(task.retry_backoff),
        "retryCount": task.retry_count,
        "nextAttemptAt": iso_utc(next_attempt),
        "waitForSignal": task.wait_for_signal,
        "maxWaitTime": task.max_wait_time,
        "waitDeadline": iso_utc(task.wait_deadline),
        "onCompleteUrl": task.on_complete_url,
        "metadata": task.metadata,
        "sandbox": task.sandbox,
        "provider": task.provider or None,
        "pollConfig": poll_config_data(task.poll_config),
        "pollUrl": (task.poll_config or {}).get(RESOLVED, {}).get("url"),
        "pollCount": task.poll_count,
        "lastPolledAt": iso_utc(task.last_polled_at),
        "lastPollStatusCode": task.last_poll_status_code,
        "lastPollError": task.last_poll_error or None,
        "nextPollAt": iso_utc(task.next_attempt_at if task.status in POLL_OPEN else None),
        "result": task.result,
        "error": task.error or None,
        "idempotencyKey": task.idempotency_key,
        "flowControl": flow_control_data(task),
        "signalReceivedAt": iso_utc(task.signal_received_at),
        "earlySignal": early,
        "createdAt": iso_utc(task.created_at),
        "updatedAt": iso_utc(task.updated_at),
        "startedAt": iso_utc(task.started_at),
        "completedAt": iso_utc(task.completed_at),
    }


#: The key of a polling task's ``poll_config`` that holds the URLs resolved from the submit
#: answer (``url``, ``resultUrl``); the API shows the poll URL as ``pollUrl``.
RESOLVED = "resolved"


def poll_config_data(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """A task's poll settings as the API shows them (without the resolved URLs)."""
    if config is None:
        return None
    return {k: v for k, v in config.items() if k != RESOLVED}


def flow_control_data(task: Task) -> dict[str, Any] | None:
    """A task's ``flowControl`` as given (None: the task has none)."""
    if task.flow_key is None:
        return None
    return {
        "key": task.flow_key,
        "parallelism": task.flow_parallelism,
        "rate": task.flow_rate,
        "period": task.flow_period,
    }


def attempt_data(attempt: Attempt) -> dict[str, Any]:
    """One callback attempt of a task."""
    return {
        "number": attempt.number,
        "startedAt": iso_utc(attempt.started_at),
        "duration": attempt.duration_ms,
        "statusCode": attempt.status_code,
        "error": attempt.error or None,
        "outcome": str(attempt.outcome),
    }


def delivery_data(delivery: WebhookDelivery) -> dict[str, Any]:
    """One onComplete event of a task and where its delivery stands."""
    # Only meaningful while the event waits to be delivered.
    next_attempt = delivery.next_attempt_at if delivery.status in DELIVERY_OPEN else None
    return {
        "id": str(delivery.id),
        "event": delivery.event,
        "status": str(delivery.status),
        "attempts": delivery.attempt_count,
        "lastStatusCode": delivery.last_status_code,
        "lastError": delivery.last_error or None,
        "createdAt": iso_utc(delivery.created_at),
        "deliveredAt": iso_utc(delivery.delivered_at),
        "nextAttemptAt": iso_utc(next_attempt),
    }


def task_detail_data(task: Task) -> dict[str, Any]:
    """The task with its attempts and webhook deliveries (``GET /v1/tasks/{id}``)."""
    return {
        **task_data(task),
        "attempts": [attempt_data(a) for a in task.attempts.all()],
        "webhookDeliveries": [delivery_data(d) for d in task.webhook_deliveries.all()],
    }


def event_body(delivery: WebhookDelivery) -> str:
    """The JSON body of a webhook event: ``{"event": …, "task": <the API task object>}``.

    The stored body when there is one: it is rendered at the first attempt and then kept, so
    retries and re-sends carry the same bytes (and the task as it was when first sent).
    """
    if delivery.body:
        return delivery.body
    data = {"event": delivery.event, "task": task_data(delivery.task)}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def token_data(token: VaultToken) -> dict[str, Any]:
    """A Token Vault entry as the API shows it: never its value."""
    return {"id": token.pk, "name": token.name, "createdAt": iso_utc(token.created_at)}


def revoked_token_data(token: VaultToken) -> dict[str, Any]:
    """A revoked Token Vault entry (the answer to ``DELETE /v1/tokens/{id}``)."""
    return {"id": token.pk, "name": token.name, "revokedAt": iso_utc(token.revoked_at)}


def schedule_data(schedule: Schedule, now: datetime | None = None) -> dict[str, Any]:
    """A schedule as the API shows it (its beat rows read with it: ``with_beat()``).

    ``cron``, ``timezone`` and ``paused`` are read from the django-celery-beat rows, so an edit
    in the admin shows here; ``task`` is the stored template, its secret-looking headers
    redacted as a task's are; ``nextRunAt`` is the next tick (None while paused)."""
    from asyncqueue_django.services.schedules import cron_text, next_run

    periodic = schedule.periodic_task
    crontab = periodic.crontab
    template = dict(schedule.task_template)
    if "headers" in template:
        template["headers"] = redact_headers(template["headers"])
    return {
        "id": schedule.pk,
        "cron": cron_text(crontab) if crontab is not None else None,
        "timezone": str(crontab.timezone) if crontab is not None else None,
        "task": template,
        "paused": not periodic.enabled,
        "sandbox": schedule.sandbox,
        "nextRunAt": iso_utc(next_run(schedule, now or datetime.now(UTC))),
        "lastRunAt": iso_utc(schedule.last_run_at),
        "lastTaskId": schedule.last_task_id,
        "lastError": schedule.last_error or None,
        "createdAt": iso_utc(schedule.created_at),
    }


def queue_data(queue: QueueInfo) -> dict[str, Any]:
    """A queue as ``GET /v1/queues`` shows it."""
    return {
        "name": queue.name,
        "paused": queue.paused,
        "pending": queue.pending,
        "delayed": queue.delayed,
        "processing": queue.processing,
        "waiting": queue.waiting,
        "polling": queue.polling,
        "oldestPendingAgeSeconds": round(queue.oldest_pending_age, 3),
    }
