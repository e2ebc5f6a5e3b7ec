"""Intent-named queries. Each takes ``now`` (or a cutoff) as a parameter: no clock inside."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import models
from django.db.models import Q

from asyncqueue_django.states import RUNNABLE, TaskStatus

if TYPE_CHECKING:
    from asyncqueue_django.models import (  # noqa: F401
        ApiKey,
        Attempt,
        Task,
        Team,
        WebhookDelivery,
    )


class TaskQuerySet(models.QuerySet["Task"]):
    def for_team(self, team: Team | int) -> TaskQuerySet:
        return self.filter(team=team)

    def runnable(self) -> TaskQuerySet:
        return self.filter(status__in=list(RUNNABLE))

    def due(self, now: datetime) -> TaskQuerySet:
        """Pending or delayed tasks whose time has come (uses ``aq_task_due_idx``)."""
        return self.runnable().filter(next_attempt_at__lte=now)

    def lost_dispatches(self, now: datetime, grace: timedelta) -> TaskQuerySet:
        """Due for longer than ``grace`` and not handed to the broker within ``grace`` either.

        These are tasks whose message was never sent (broker down at commit) or was lost.
        """
        cutoff = now - grace
        return self.due(cutoff).filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=cutoff))

    def overdue(self, now: datetime) -> TaskQuerySet:
        """Waiting tasks past their deadline (uses ``aq_task_wait_deadline_idx``)."""
        return self.filter(status=TaskStatus.WAITING, wait_deadline__lte=now)

    def stale_leases(self, now: datetime) -> TaskQuerySet:
        """Processing tasks whose worker's lease ran out (uses ``aq_task_lease_idx``)."""
        return self.filter(status=TaskStatus.PROCESSING, lease_expires_at__lt=now)

    def finished_before(self, cutoff: datetime) -> TaskQuerySet:
        return self.filter(completed_at__lt=cutoff)

    def lock_batch(self, size: int) -> TaskQuerySet:
        """At most ``size`` rows, locked; rows another transaction holds are skipped.

        ``SKIP LOCKED`` lets several sweepers run at once without waiting on each other; on
        SQLite (no row locks) the guarded UPDATE of each transition still picks one winner.
        """
        return self.select_for_update(skip_locked=True, of=("self",)).order_by()[:size]


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class AttemptQuerySet(models.QuerySet["Attempt"]):
    def for_history(self) -> AttemptQuerySet:
        return self.order_by("number")


class WebhookDeliveryQuerySet(models.QuerySet["WebhookDelivery"]):
    """Deliveries are ``pending`` until delivered, given up (``failed``) or refused (``gone``).

    A pending delivery with no lease waits for its ``next_attempt_at``; one with a lease is in
    flight on a worker until the lease runs out.
    """

    def due(self, now: datetime) -> WebhookDeliveryQuerySet:
        """Pending, not in flight, and due (uses ``aq_whd_due_idx``)."""
        return self.filter(
            status="pending", next_attempt_at__lte=now, lease_expires_at__isnull=True
        )

    def lost_dispatches(self, now: datetime, grace: timedelta) -> WebhookDeliveryQuerySet:
        """Due for longer than ``grace`` and not handed to the broker within ``grace``."""
        cutoff = now - grace
        return self.due(cutoff).filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=cutoff))

    def stale_leases(self, now: datetime) -> WebhookDeliveryQuerySet:
        """In flight on a worker whose lease ran out (uses ``aq_whd_lease_idx``)."""
        return self.filter(status="pending", lease_expires_at__lt=now)

    def lock_batch(self, size: int) -> WebhookDeliveryQuerySet:
        """At most ``size`` rows, locked, skipping rows another transaction holds."""
        return self.select_for_update(skip_locked=True, of=("self",)).order_by()[:size]
