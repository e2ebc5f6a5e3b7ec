"""The rows the write path changes, each with the lifecycle that guards it, and the reads the
services share."""

from __future__ import annotations

from typing import Any

from asyncqueue_django import states
from asyncqueue_django.exceptions import TaskNotFound
from asyncqueue_django.models import Task, Team, WebhookDelivery
from asyncqueue_django.services.engine import Table

TASKS: Table[Task] = Table(Task, states.TASK)
DELIVERIES: Table[WebhookDelivery] = Table(WebhookDelivery, states.DELIVERY)


def get_task(team: Team, task_id: Any) -> Task:
    """The task ``task_id`` of ``team``; :class:`TaskNotFound` if there is none."""
    task = Task.objects.for_team(team).filter(pk=task_id).first()
    if task is None:
        raise TaskNotFound()
    return task


def current_status(task_id: Any, team: Team | None = None) -> str:
    """The task's status now (to name it in an :class:`InvalidTransition`)."""
    qs = Task.objects.filter(pk=task_id)
    if team is not None:
        qs = qs.for_team(team)
    status = qs.values_list("status", flat=True).first()
    if status is None:
        raise TaskNotFound()
    return status
