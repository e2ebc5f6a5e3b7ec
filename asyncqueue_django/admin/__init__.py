"""The Django admin as the operators' dashboard: tasks, failed and timed-out tasks, teams and
API keys, schedules, one module per model (``tasks``, ``teams``, ``keys``, ``schedules``) over
shared pieces (``base``: the read-only inline, the action runner).
API keys, queues, one module per model (``tasks``, ``teams``, ``keys``, ``queues``) over shared
pieces (``base``: the read-only inline, the action runner).

Read-mostly. Every page is read-only; every write is an ``@admin.action`` that calls
``services`` (the one write path) and reports with ``message_user``. The only form that
writes is "Add API key" (live or test), and it too issues the key through
``services.create_api_key``. Vault tokens show their names and dates only, never a value.
Secrets never appear: not the signal token's digest, not webhook secrets, not secret-looking
request headers; a new API key is shown exactly once, on the page that answers its creation.

Actions need the model's "change" permission (``has_operate_permission``): a staff user who
may only view sees the pages but not the actions. Lists cost a fixed number of queries per page
(``list_select_related``, annotations, large columns deferred); the task list never counts the
whole table (``show_full_result_count = False``).
"""

from __future__ import annotations

# Importing the modules registers their ModelAdmins.
from asyncqueue_django.admin import dashboard, keys, queues, schedules, tasks, teams, tokens
from asyncqueue_django.admin.dashboard import DashboardAdmin
from asyncqueue_django.admin.keys import ApiKeyAdmin
from asyncqueue_django.admin.queues import QueueAdmin
from asyncqueue_django.admin.schedules import ScheduleAdmin
from asyncqueue_django.admin.tasks import DeadTaskAdmin, TaskAdmin
from asyncqueue_django.admin.teams import TeamAdmin
from asyncqueue_django.admin.tokens import VaultTokenAdmin

__all__ = [
    "ApiKeyAdmin",
    "DashboardAdmin",
    "DeadTaskAdmin",
    "QueueAdmin",
    "ScheduleAdmin",
    "TaskAdmin",
    "TeamAdmin",
    "VaultTokenAdmin",
    "dashboard",
    "keys",
    "queues",
    "schedules",
    "tasks",
    "teams",
    "tokens",
]
