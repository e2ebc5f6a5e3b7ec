"""The one place every terminal transition of a task passes through, inside its transaction:
its webhook event is created there, and ``task_finished`` is sent after the commit. So no path
can end a task without its event, and none can create two."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.db import transaction

from asyncqueue_django.models import Task, WebhookDelivery
from asyncqueue_django.services.deliveries import (
    create_events,
    event_rows,
    publish_events_on_commit,
)
from asyncqueue_django.signals import task_finished
from asyncqueue_django.states import TaskStatus

logger = logging.getLogger(__name__)


def on_terminal(
    task_id: Any, status: TaskStatus, on_complete_url: str | None, now: datetime
) -> None:
    """Call inside the transaction that moved ``task_id`` to the terminal ``status``.

    Creates the transition's one webhook event (when the task has an ``on_complete_url``) in
    the same transaction, so the event exists if and only if the transition committed; after
    the commit, the event is enqueued for delivery and ``task_finished`` is sent.
    """
    on_terminal_many([(task_id, on_complete_url)], status, now)


def on_terminal_many(
    tasks: Iterable[tuple[Any, str | None]], status: TaskStatus, now: datetime
) -> None:
    """:func:`on_terminal` for many tasks moved to ``status`` by one statement (one INSERT)."""
    tasks = list(tasks)
    for task_id, _ in tasks:
        logger.info("Task %s finished: %s", task_id, status)
    create_events(tasks, status, now)
    task_ids = [str(task_id) for task_id, _ in tasks]
    transaction.on_commit(functools.partial(_send_finished, task_ids, str(status)), robust=True)


def terminal_rows(
    task_id: Any, status: TaskStatus, on_complete_url: str | None, now: datetime
) -> tuple[list[WebhookDelivery], Callable[[], None]]:
    """:func:`on_terminal` in two halves, for a caller that writes the rows itself (the
    engine's one-statement finish): the unsaved event (if any), and what to call right after
    the statement that inserted it (inside its transaction, if any) to announce it."""
    events = event_rows([(task_id, on_complete_url)], status, now)
    return events, functools.partial(_announce, events, task_id, status)


def _announce(events: list[WebhookDelivery], task_id: Any, status: TaskStatus) -> None:
    logger.info("Task %s finished: %s", task_id, status)
    publish_events_on_commit(events)
    transaction.on_commit(
        functools.partial(_send_finished, [str(task_id)], str(status)), robust=True
    )


def _send_finished(task_ids: list[str], status: str) -> None:
    """Send ``task_finished`` for each task; a failing receiver does not stop the others."""
    for task_id in task_ids:
        for receiver, result in task_finished.send_robust(
            sender=Task, task_id=uuid.UUID(task_id), status=status
        ):
            if isinstance(result, Exception):
                logger.error(
                    "task_finished receiver %r failed for task %s",
                    receiver,
                    task_id,
                    exc_info=result,
                )
