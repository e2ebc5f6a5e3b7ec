"""Retention: deleting finished tasks in batches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from asyncqueue_django import states, stats
from asyncqueue_django.models import Task
from asyncqueue_django.querysets import TaskQuerySet
from asyncqueue_django.services.offsets import add_offsets

logger = logging.getLogger(__name__)


def prunable_tasks(cutoff: datetime, now: datetime | None = None) -> TaskQuerySet:
    """Tasks :func:`prune_finished` deletes: terminal (never pending, delayed, processing or
    waiting), finished before ``cutoff``, and past their Idempotency-Key window (deleting a
    task inside it would let a client's replay create a second task). Walks
    ``aq_task_completed_idx``."""
    now = now or timezone.now()
    return (
        Task.objects.finished_before(cutoff)
        .filter(status__in=list(states.TERMINAL))
        # exclude() keeps NULLs: a task without a key has no window to wait for.
        .exclude(idempotency_expires_at__gt=now)
    )


def prune_finished(
    cutoff: datetime,
    batch_size: int,
    *,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete :func:`prunable_tasks` with their attempts (and whatever else cascades from a
    task), ``batch_size`` tasks per transaction. Returns how many tasks were deleted;
    ``progress`` is called with the running total after each batch.

    Each batch locks its rows (``SKIP LOCKED`` on PostgreSQL), so a concurrent ``retry`` of a
    failed task waits for the batch and then finds it gone (404), or the batch skips it; the
    DELETE re-checks status and cutoff, so a task that left its terminal status is never
    deleted. Short transactions keep locks brief, and an interrupted prune keeps its progress.
    """
    now = now or timezone.now()
    candidates = prunable_tasks(cutoff, now)
    total = 0
    while True:
        with transaction.atomic():  # one batch per transaction: brief locks, resumable
            pks = list(candidates.lock_batch(batch_size).values_list("pk", flat=True))
            if not pks:
                break
            doomed = Task.objects.filter(
                pk__in=pks, status__in=list(states.TERMINAL), completed_at__lt=cutoff
            )
            # The counters of /metrics keep what this batch deletes (same transaction).
            add_offsets(stats.offsets_of_tasks(doomed.values_list("pk", flat=True)))
            # only("pk"): the collector loads tasks to cascade; payloads need not come along.
            _, per_model = doomed.only("pk").delete()
        total += per_model.get(Task._meta.label, 0)
        if progress is not None:
            progress(total)
        if len(pks) < batch_size:
            break
    logger.info("Pruned %s finished tasks completed before %s", total, cutoff.isoformat())
    return total
