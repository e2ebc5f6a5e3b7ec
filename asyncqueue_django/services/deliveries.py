"""Webhook events (``onCompleteUrl``) as a kind of outbound work: the one event of each
terminal transition, its delivery attempts and retries, and an operator's re-send.

The claim/lease/finish/recover mechanics are the shared engine's (``engine.py``); this module
is the adapter that says what a delivery's outcome means. The task is never changed here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from asyncqueue_django import states
from asyncqueue_django.backoff import schedule_delay
from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import WebhookInFlight, WebhookNotFound
from asyncqueue_django.models import Team, WebhookAttempt, WebhookDelivery
from asyncqueue_django.services import engine
from asyncqueue_django.services.engine import AttemptRecord, Outcome, WorkKind
from asyncqueue_django.services.tables import DELIVERIES, get_task
from asyncqueue_django.states import DeliveryStatus, TaskStatus
from asyncqueue_django.values import CallOutcome, Message

logger = logging.getLogger(__name__)


#: The priority of webhook messages (the API's middle one; events have none of their own).
WEBHOOK_PRIORITY = 5


class Webhooks(WorkKind[WebhookDelivery]):
    """One POST of an event to its URL per attempt, retried on ``WEBHOOK_RETRY_SCHEDULE``."""

    name = "webhook"
    task_name = "asyncqueue.deliver_webhook"
    table = DELIVERIES
    related = ("task__team",)
    claim_from = states.DELIVERY_OPEN
    claim_to = None  # a claimed event stays pending; the lease marks it in flight
    in_flight = states.DELIVERY_OPEN
    wakes = True

    def message(self, pk: Any, *values: Any, countdown: float = 0) -> Message:
        return Message(
            self.task_name, (str(pk),), app_settings.WEBHOOK_QUEUE, WEBHOOK_PRIORITY, countdown
        )

    def wake_target(self, *values: Any) -> tuple[str, int]:
        # Every event goes to one queue, at the middle priority.
        return app_settings.WEBHOOK_QUEUE, WEBHOOK_PRIORITY

    def lease_seconds(self, row: WebhookDelivery) -> float:
        # http.call's deadline covers every redirect hop of one attempt; the margin absorbs a
        # slow database.
        return float(
            app_settings.WEBHOOK_TIMEOUT + app_settings.CONNECT_TIMEOUT + app_settings.LEASE_MARGIN
        )

    def claim_filters(self) -> dict[str, Any]:
        return {"lease_expires_at__isnull": True}  # not in flight on another worker

    def released(self) -> dict[str, Any]:
        return {"leased_by": "", "lease_expires_at": None}

    def retry_or_give_up(self, delivery: WebhookDelivery, now: datetime) -> Outcome:
        """``pending`` for the next retry on ``WEBHOOK_RETRY_SCHEDULE``, or ``failed`` once it
        is used up."""
        retry_number = delivery.retry_count + 1
        delay = schedule_delay(
            app_settings.WEBHOOK_RETRY_SCHEDULE, retry_number, jitter=app_settings.RETRY_JITTER
        )
        decision = self.retry_decision(retry_number, delay)
        if not decision.retry:
            return Outcome(DeliveryStatus.FAILED, {"next_attempt_at": None})
        return Outcome(DeliveryStatus.PENDING, self.retry_fields(decision, now), decision.countdown)

    def decide(self, row: WebhookDelivery, call: CallOutcome, now: datetime) -> Outcome:
        # Only a 2xx delivers (stricter than a callback, where an unfollowed 3xx also counts).
        code = call.status_code
        delivered = code is not None and 200 <= code < 300 and not call.error
        if delivered:
            outcome = Outcome(
                DeliveryStatus.DELIVERED, {"delivered_at": now, "next_attempt_at": None}
            )
        elif code == 410 and not call.error:
            outcome = Outcome(DeliveryStatus.GONE, {"next_attempt_at": None})
        elif call.error_kind in ("blocked", "invalid"):
            outcome = Outcome(DeliveryStatus.FAILED, {"next_attempt_at": None})
        else:
            outcome = self.retry_or_give_up(row, now)
        outcome.fields["last_status_code"] = code
        outcome.fields["last_error"] = "" if delivered else call.describe()
        return outcome

    def decide_lost(self, row: WebhookDelivery, now: datetime) -> Outcome:
        outcome = self.retry_or_give_up(row, now)
        outcome.fields.update(last_status_code=None, last_error=engine.WORKER_LOST)
        return outcome

    def attempt_row(self, row: WebhookDelivery, attempt: AttemptRecord) -> WebhookAttempt:
        # The delivery log keeps no response body or headers, and no outcome column.
        return WebhookAttempt(
            delivery_id=row.pk,
            number=attempt.number,
            started_at=attempt.started_at,
            duration_ms=attempt.duration_ms,
            status_code=attempt.status_code,
            error=attempt.error,
            worker=attempt.worker,
        )

    def lease_sql(self) -> tuple[str, list[Any]]:
        seconds = (
            app_settings.WEBHOOK_TIMEOUT + app_settings.CONNECT_TIMEOUT + app_settings.LEASE_MARGIN
        )
        return "%s::double precision", [float(seconds)]

    def claim_where_sql(self) -> str:
        return "lease_expires_at IS NULL"  # not in flight on another worker


WEBHOOKS = Webhooks()


def event_rows(
    tasks: Iterable[tuple[Any, str | None]], status: TaskStatus, now: datetime
) -> list[WebhookDelivery]:
    """The (unsaved) event of each of ``tasks`` (``(task id, on_complete_url)``) that just
    moved to the terminal ``status``, for those with a URL."""
    event = states.EVENT_NAMES[status]
    return [
        WebhookDelivery(
            task_id=task_id,
            event=event,
            url=url,
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            # Optimistic, as for tasks: a message lost at commit is re-sent by the sweep.
            dispatched_at=now,
        )
        for task_id, url in tasks
        if url
    ]


def publish_events_on_commit(deliveries: list[WebhookDelivery]) -> None:
    """Once ``deliveries`` are committed, wake a worker for the due events: one wake-up for
    them all (coalesced with other commits'), whose batch claims up to ``BATCH_SIZE``."""
    if deliveries:
        WEBHOOKS.publish_on_commit(deliveries[0].pk)


def create_events(
    tasks: Iterable[tuple[Any, str | None]], status: TaskStatus, now: datetime
) -> None:
    """The one event of each of ``tasks`` (``(task id, on_complete_url)``) that just moved to
    the terminal ``status``, for those with a URL: one INSERT inside the caller's transaction,
    published after its commit."""
    deliveries = event_rows(tasks, status, now)
    if deliveries:
        WebhookDelivery.objects.bulk_create(deliveries)
        publish_events_on_commit(deliveries)


def enqueue_webhook(delivery_id: str, countdown: float = 0) -> bool:
    """Send the delivery message of one event now. False (logged) if the broker refused it:
    the event row is committed, and the recovery sweep re-sends it after ``DISPATCH_GRACE``."""
    return engine.publish(WEBHOOKS.message(delivery_id, countdown=countdown))


def claim_webhook(
    delivery_id: Any, worker: str, now: datetime | None = None
) -> WebhookDelivery | None:
    """A due, pending, not-in-flight event → leased to ``worker`` for one attempt.

    Returns the delivery with its task and team, or None: the normal answer to a duplicate or
    late message (delivered, given up, in flight elsewhere, or not due yet).
    """
    return engine.claim(WEBHOOKS, delivery_id, worker, now or timezone.now())


def claim_due_webhooks(
    worker: str,
    now: datetime | None = None,
    limit: int | None = None,
    due_by: datetime | None = None,
) -> list[WebhookDelivery]:
    """Up to ``limit`` (default ``BATCH_SIZE``) due, pending, not-in-flight events, longest
    due first, each leased to ``worker`` for one attempt (what a wake-up message runs;
    ``due_by`` is the time it was sent for, see :func:`engine.claim_batch`)."""
    size = app_settings.BATCH_SIZE if limit is None else limit
    return engine.claim_batch(
        WEBHOOKS, app_settings.WEBHOOK_QUEUE, worker, now or timezone.now(), size, due_by
    )


def finish_webhook_attempt(
    delivery: WebhookDelivery,
    call: CallOutcome,
    *,
    worker: str,
    body: str,
    now: datetime | None = None,
) -> DeliveryStatus | None:
    """Record the attempt a worker made after :func:`claim_webhook` and move the event on:

    - 2xx → ``delivered``;
    - 410 Gone → ``gone`` (the receiver asked to stop; not retried);
    - an address the SSRF guard blocks, or a request that cannot be made → ``failed`` at once;
    - anything else (other statuses, timeouts, connection errors) → ``pending`` for the next
      retry on ``WEBHOOK_RETRY_SCHEDULE``, or ``failed`` once it is used up.

    ``body`` is the JSON sent; it is stored so every later attempt sends the same bytes. The
    task is never touched. Returns the new status, or None when the worker no longer holds the
    lease (the recovery sweep took the event over): then nothing is written.
    """
    now = now or timezone.now()
    status = engine.finish(WEBHOOKS, delivery, call, worker=worker, now=now, fields={"body": body})
    return None if status is None else DeliveryStatus(status)


def finish_webhook_attempts(
    batch: list[tuple[WebhookDelivery, CallOutcome, str]],
    *,
    worker: str,
    now: datetime | None = None,
) -> list[DeliveryStatus | None]:
    """:func:`finish_webhook_attempt` for the attempts of a batch at once (one commit);
    ``batch`` holds ``(delivery, call, body sent)``."""
    statuses = engine.finish_many(
        WEBHOOKS,
        [(d, c, {"body": body}) for d, c, body in batch],
        worker=worker,
        now=now or timezone.now(),
    )
    return [None if s is None else DeliveryStatus(s) for s in statuses]


def resend_webhook(delivery: WebhookDelivery, now: datetime | None = None) -> WebhookDelivery:
    """Deliver an event again (an operator's re-send): any status → ``pending``, due now, in
    a new attempt cycle (the retry schedule starts over). The event id and body stay the same,
    so receivers can tell it is the same event.

    Raises :class:`WebhookInFlight` while a worker is delivering it.
    """
    now = now or timezone.now()
    with transaction.atomic():  # the message is sent only once the reset has committed
        moved = DELIVERIES.move(
            delivery.pk,
            DeliveryStatus.PENDING,
            now=now,
            filters={"lease_expires_at__isnull": True},
            retry_count=0,
            next_attempt_at=now,
            dispatched_at=now,
            delivered_at=None,
        )
        if not moved:
            if not WebhookDelivery.objects.filter(pk=delivery.pk).exists():
                raise WebhookNotFound()
            raise WebhookInFlight()
        WEBHOOKS.publish_on_commit(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def resend_latest_webhook(team: Team, task_id: Any, now: datetime | None = None) -> WebhookDelivery:
    """:func:`resend_webhook` for the newest event of a task of ``team``.

    Raises :class:`TaskNotFound`, :class:`WebhookNotFound` (the task has no event yet) or
    :class:`WebhookInFlight`.
    """
    task = get_task(team, task_id)
    delivery = task.webhook_deliveries.order_by("-created_at", "-id").first()
    if delivery is None:
        raise WebhookNotFound("Task has no webhook event")
    return resend_webhook(delivery, now)
