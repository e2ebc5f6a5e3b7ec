"""The sweeps beat runs, for every kind of outbound work alike: send what came due, re-send
what was lost, recover what a dead worker held. The criteria are the querysets' (``due``,
``lost_dispatches``, ``stale_leases``), and ``asyncqueue_recover --dry-run`` counts the same
querysets through :func:`pending_sweeps`."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from asyncqueue_django.conf import app_settings
from asyncqueue_django.services import engine
from asyncqueue_django.services.callbacks import CALLBACKS
from asyncqueue_django.services.deliveries import WEBHOOKS
from asyncqueue_django.services.engine import WorkKind
from asyncqueue_django.services.polls import POLLS

#: Every kind of outbound work, in the order the sweeps take them.
KINDS: tuple[WorkKind, ...] = (CALLBACKS, WEBHOOKS, POLLS)  # type: ignore[type-arg]


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


def _grace() -> timedelta:
    return timedelta(seconds=app_settings.DISPATCH_GRACE)


def dispatch_due(now: datetime | None = None) -> int:
    """Wake the queues of delayed tasks that have come due and were never sent (long delays
    and long backoffs): one wake-up per queue and priority. Returns how many tasks."""
    now = _now(now)
    return engine.dispatch(CALLBACKS, CALLBACKS.table.objects().never_dispatched(now), now)


def redispatch_lost(now: datetime | None = None) -> int:
    """Wake the queues of tasks that have been due and unclaimed for ``DISPATCH_GRACE`` since
    their last wake-up (the broker was down at commit, or the message was lost), one wake-up
    per queue and priority. Returns how many tasks."""
    now = _now(now)
    return engine.dispatch(CALLBACKS, CALLBACKS.table.objects().lost_dispatches(now, _grace()), now)


def recover_stale_leases(now: datetime | None = None) -> int:
    """``processing`` tasks whose lease expired (their worker died) → retried or failed by the
    normal rules, the lost attempt recorded as "worker lost". Returns how many."""
    return engine.recover(CALLBACKS, _now(now))


def dispatch_due_webhooks(now: datetime | None = None) -> int:
    """Wake a worker for events whose long retry delay has passed (delays longer than
    ``COUNTDOWN_MAX`` wait here, not in the broker). Returns how many events."""
    now = _now(now)
    return engine.dispatch(WEBHOOKS, WEBHOOKS.table.objects().never_dispatched(now), now)


def redispatch_lost_webhooks(now: datetime | None = None) -> int:
    """Wake a worker again for events due and unclaimed for ``DISPATCH_GRACE`` since their
    last wake-up (the broker was down, the message was lost, or the worker restarted before
    running it). Returns how many events."""
    now = _now(now)
    return engine.dispatch(WEBHOOKS, WEBHOOKS.table.objects().lost_dispatches(now, _grace()), now)


def recover_stale_webhooks(now: datetime | None = None) -> int:
    """Events whose delivering worker died (lease expired) → retried or failed by the normal
    schedule, the lost attempt recorded as "worker lost". Returns how many."""
    return engine.recover(WEBHOOKS, _now(now))


def dispatch_due_polls(now: datetime | None = None) -> int:
    """Send the messages of provider polls whose long interval has passed. Returns how many."""
    now = _now(now)
    return engine.dispatch(POLLS, POLLS.table.objects().never_dispatched(now), now)


def redispatch_lost_polls(now: datetime | None = None) -> int:
    """Re-send provider polls due and unclaimed for ``DISPATCH_GRACE`` since their last
    message (the broker was down, or the message was lost)."""
    now = _now(now)
    return engine.dispatch(POLLS, POLLS.table.objects().lost_dispatches(now, _grace()), now)


def recover_stale_polls(now: datetime | None = None) -> int:
    """Polling tasks whose polling worker died (lease expired) → polled again at once, the
    lost poll counted. Returns how many."""
    return engine.recover(POLLS, _now(now))


def pending_sweeps(now: datetime | None = None) -> dict[str, dict[str, int]]:
    """What the sweeps would handle at ``now``, per kind (``"task"``, ``"webhook"``,
    ``"poll"``): stale
    leases, lost messages, and due rows never sent. Changes nothing."""
    now = _now(now)
    return {
        kind.name: {name: qs.count() for name, qs in engine.sweep_querysets(kind, now).items()}
        for kind in KINDS
    }
