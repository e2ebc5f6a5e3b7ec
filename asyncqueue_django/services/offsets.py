"""Metric offsets: what pruning and retries take away from the counters ``/metrics`` derives
from the tables, added back so that the counters never go down (see ``stats.py``)."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import IntegrityError, transaction
from django.db.models import F

from asyncqueue_django.models import MetricOffset


def add_offsets(increments: Mapping[tuple[str, str], int]) -> None:
    """Add each ``(metric, labels) → n`` to its offset row, creating the row on first use.

    Call inside the transaction that deletes or moves the rows, so a counter never counts a
    row twice or not at all. Only cold paths call this (prune batches, retries).
    """
    for (metric, labels), n in sorted(increments.items()):
        if not n:
            continue
        rows = MetricOffset.objects.filter(metric=metric, labels=labels)
        if rows.update(value=F("value") + n):
            continue
        try:
            with transaction.atomic():  # a savepoint: a concurrent first insert may win
                MetricOffset.objects.create(metric=metric, labels=labels, value=n)
        except IntegrityError:
            rows.update(value=F("value") + n)
