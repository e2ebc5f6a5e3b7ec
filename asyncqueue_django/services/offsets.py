"""Metric offsets: what pruning and retries take away from the counters ``/metrics`` derives
from the tables, added back so that the counters never go down (see ``stats.py``)."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from asyncqueue_django.models import MetricOffset


def add_offsets(increments: Mapping[tuple[str, str], int]) -> None:
    """Add each ``(metric, labels) → n`` to its offset row, creating the row on first use: one
    statement per row (an upsert on PostgreSQL and SQLite).

    Call inside the transaction that deletes or moves the rows, so a counter never counts a
    row twice or not at all. Only cold paths call this (prune batches, retries).
    """
    for (metric, labels), n in sorted(increments.items()):
        if n:
            _add(metric, labels, n)


def _add(metric: str, labels: str, n: int) -> None:
    if connection.vendor in ("postgresql", "sqlite"):
        q = connection.ops.quote_name
        table = q(MetricOffset._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({q('metric')}, {q('labels')}, {q('value')}) "  # noqa: S608
                f"VALUES (%s, %s, %s) ON CONFLICT ({q('metric')}, {q('labels')}) "
                f"DO UPDATE SET {q('value')} = {table}.{q('value')} + EXCLUDED.{q('value')}",
                [metric, labels, n],
            )
        return
    rows = MetricOffset.objects.filter(metric=metric, labels=labels)  # pragma: no cover
    if rows.update(value=F("value") + n):  # pragma: no cover
        return
    try:  # pragma: no cover
        with transaction.atomic():  # a savepoint: a concurrent first insert may win
            MetricOffset.objects.create(metric=metric, labels=labels, value=n)
    except IntegrityError:  # pragma: no cover
        rows.update(value=F("value") + n)
