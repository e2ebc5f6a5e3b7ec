"""Queues: depth by status and the pause switch.

A queue is a name tasks carry (``queue``); it needs no row until it is paused. A pause is
recorded as a :class:`~asyncqueue_django.models.Queue` row either for one team (the API:
a team pauses its own tasks on that queue, never another team's) or for every team (``team``
None: the admin and ``asyncqueue_queues``, the operator's switch for a whole Celery queue).

A paused queue accepts tasks and starts none: the claim's gate (``flow.py``) leaves its
due tasks where they are. Nothing else changes: waiting tasks still take signals and time
out, running ones finish. Resuming wakes a worker for the queue, so its due tasks start at
once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from asyncqueue_django import stats, validators
from asyncqueue_django.models import Queue, Team
from asyncqueue_django.services import engine
from asyncqueue_django.services.callbacks import CALLBACKS
from asyncqueue_django.states import TaskStatus
from asyncqueue_django.values import QueueInfo


def _paused_names(team: Team | None) -> set[str]:
    scope = Q(team__isnull=True) | (Q(team=team) if team is not None else Q())
    return set(Queue.objects.filter(scope, paused=True).values_list("name", flat=True))


def list_queues(team: Team | None, now: datetime | None = None) -> list[QueueInfo]:
    """Every queue that holds open tasks of ``team`` (every team's when None) or is paused
    for it, by name: counts by open status and the oldest pending age (grouped queries over
    the partial indexes of open tasks, so the cost follows open tasks, not the table)."""
    now = now or timezone.now()
    depths = {d.queue: d for d in stats.queue_depths(now, team)}
    paused = _paused_names(team)
    out = []
    for name in sorted(set(depths) | paused):
        depth = depths.get(name)
        counts = depth.counts if depth is not None else {}
        out.append(
            QueueInfo(
                name=name,
                paused=name in paused,
                pending=counts.get(TaskStatus.PENDING, 0),
                delayed=counts.get(TaskStatus.DELAYED, 0),
                processing=counts.get(TaskStatus.PROCESSING, 0),
                waiting=counts.get(TaskStatus.WAITING, 0),
                polling=counts.get(TaskStatus.POLLING, 0),
                oldest_pending_age=depth.oldest_pending_age if depth is not None else 0.0,
            )
        )
    return out


def get_queue(team: Team | None, name: str, now: datetime | None = None) -> QueueInfo:
    """The queue ``name`` as :func:`list_queues` shows it (all zero if it holds nothing)."""
    validators.check_queue_name(name)
    for info in list_queues(team, now):
        if info.name == name:
            return info
    return QueueInfo(name, False, 0, 0, 0, 0, 0, 0.0)


def _switch(team: Team | None, name: str, paused: bool, now: datetime) -> None:
    fields: dict[str, Any] = {"paused": paused, "paused_at": now if paused else None}
    rows = Queue.objects.filter(team=team, name=name)
    if rows.update(**fields) or not paused:
        return
    try:
        with transaction.atomic():  # a savepoint: a concurrent first pause wins the insert
            Queue.objects.create(team=team, name=name, **fields)
    except IntegrityError:
        rows.update(**fields)


def pause_queue(team: Team | None, name: str, now: datetime | None = None) -> QueueInfo:
    """Pause ``name`` for ``team`` (for every team when None): tasks are still accepted, none
    starts until it is resumed; a task already running finishes. Idempotent. Raises
    :class:`~asyncqueue_django.validators.InvalidInput` for a malformed name."""
    now = now or timezone.now()
    validators.check_queue_name(name)
    _switch(team, name, True, now)
    return get_queue(team, name, now)


def resume_queue(team: Team | None, name: str, now: datetime | None = None) -> QueueInfo:
    """Lift the pause of ``name`` for ``team`` (for every team when None) and wake a worker
    for it. A team's resume does not lift an operator's pause of the whole queue: the answer
    still says ``paused``. Idempotent. Raises ``InvalidInput`` for a malformed name."""
    now = now or timezone.now()
    validators.check_queue_name(name)
    with transaction.atomic():  # the wake-up goes out once the resume has committed
        _switch(team, name, False, now)
        engine.wake_on_commit(CALLBACKS, name, 10)
    return get_queue(team, name, now)
