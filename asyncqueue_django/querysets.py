"""Intent-named queries. Each takes ``now`` (or a cutoff) as a parameter: no clock inside.

Tasks and webhook deliveries are both outbound work and share one set of sweep queries
(:class:`OutboundQuerySet`): each kind only says which rows wait to run and which are in flight.
The sweeps in ``services`` and ``asyncqueue_recover --dry-run`` use these same querysets.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Self, TypeVar

from django.db import models
from django.db.models import Q

from asyncqueue_django.states import (
    DELIVERY_OPEN,
    IN_FLIGHT,
    POLL_OPEN,
    RUNNABLE,
    TaskStatus,
)

if TYPE_CHECKING:
    from asyncqueue_django.models import (  # noqa: F401
        ApiKey,
        Attempt,
        Schedule,
        Task,
        Team,
        VaultToken,
        WebhookDelivery,
    )

_M = TypeVar("_M", bound=models.Model)


def status_in(statuses: Iterable[str]) -> Q:
    """``status`` is one of ``statuses`` (a plain equality for one, so partial indexes match)."""
    values = sorted(str(s) for s in statuses)
    return Q(status=values[0]) if len(values) == 1 else Q(status__in=values)


class OutboundQuerySet(models.QuerySet[_M]):
    """Rows of outbound work: claimed under a lease, dispatched through the broker."""

    def waiting_to_run(self) -> Q:
        """Rows waiting for their next attempt (not held by a worker)."""
        raise NotImplementedError

    def in_flight(self) -> Q:
        """Rows a worker holds under a lease."""
        raise NotImplementedError

    def due(self, now: datetime) -> Self:
        """Waiting to run, and their time has come."""
        return self.filter(self.waiting_to_run(), next_attempt_at__lte=now)

    def never_dispatched(self, now: datetime) -> Self:
        """Due and never handed to the broker (long delays wait here, not in the broker)."""
        return self.due(now).filter(dispatched_at__isnull=True)

    def lost_dispatches(self, now: datetime, grace: timedelta) -> Self:
        """Due for longer than ``grace`` and not handed to the broker within ``grace`` either.

        Their message was never sent (broker down at commit) or was lost.
        """
        cutoff = now - grace
        return self.due(cutoff).filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=cutoff))

    def stale_leases(self, now: datetime) -> Self:
        """Held by a worker whose lease ran out (the worker died)."""
        return self.filter(self.in_flight(), lease_expires_at__lt=now)

    def lock_batch(self, size: int) -> Self:
        """At most ``size`` rows, locked; rows another transaction holds are skipped.

        ``SKIP LOCKED`` lets several sweepers run at once without waiting on each other; on
        SQLite (no row locks) the guarded UPDATE of each transition still picks one winner.
        """
        return self.select_for_update(skip_locked=True, of=("self",)).order_by()[:size]


class TaskQuerySet(OutboundQuerySet["Task"]):
    def waiting_to_run(self) -> Q:
        return status_in(RUNNABLE)  # uses aq_task_due_idx

    def in_flight(self) -> Q:
        return status_in(IN_FLIGHT)  # uses aq_task_lease_idx

    def for_team(self, team: Team | int) -> TaskQuerySet:
        return self.filter(team=team)

    def runnable(self) -> TaskQuerySet:
        return self.filter(self.waiting_to_run())

    def overdue(self, now: datetime) -> TaskQuerySet:
        """Waiting tasks past their deadline (uses ``aq_task_wait_deadline_idx``)."""
        return self.filter(status=TaskStatus.WAITING, wait_deadline__lte=now)

    def finished_before(self, cutoff: datetime) -> TaskQuerySet:
        return self.filter(completed_at__lt=cutoff)


class PollQuerySet(OutboundQuerySet["Task"]):
    """Polling tasks as provider polls: one without a lease waits for its next poll at
    ``next_attempt_at`` (``aq_task_poll_due_idx``); one with a lease has a poll in flight
    (``aq_task_poll_lease_idx``)."""

    def waiting_to_run(self) -> Q:
        return status_in(POLL_OPEN) & Q(lease_expires_at__isnull=True)

    def in_flight(self) -> Q:
        return status_in(POLL_OPEN) & Q(lease_expires_at__isnull=False)


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class VaultTokenQuerySet(models.QuerySet["VaultToken"]):
    def active(self) -> VaultTokenQuerySet:
        return self.filter(revoked_at__isnull=True)

    def for_team(self, team: Team) -> VaultTokenQuerySet:
        return self.filter(team=team)


class ScheduleQuerySet(models.QuerySet["Schedule"]):
    def for_team(self, team: Team) -> ScheduleQuerySet:
        return self.filter(team=team)

    def with_beat(self) -> ScheduleQuerySet:
        """With the beat rows the representation reads (cron, time zone, enabled)."""
        return self.select_related("periodic_task", "periodic_task__crontab")


class AttemptQuerySet(models.QuerySet["Attempt"]):
    def for_history(self) -> AttemptQuerySet:
        return self.order_by("number")


class WebhookDeliveryQuerySet(OutboundQuerySet["WebhookDelivery"]):
    """Deliveries are ``pending`` until delivered, given up (``failed``) or refused (``gone``).

    A pending delivery with no lease waits for its ``next_attempt_at``; one with a lease is in
    flight on a worker until the lease runs out.
    """

    def waiting_to_run(self) -> Q:
        return status_in(DELIVERY_OPEN) & Q(lease_expires_at__isnull=True)  # aq_whd_due_idx

    def in_flight(self) -> Q:
        return status_in(DELIVERY_OPEN)  # with lease_expires_at: aq_whd_lease_idx
