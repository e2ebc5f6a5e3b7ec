"""Migrations match the models, and the named indexes and constraints exist (STYLE 13, 15)."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings

from asyncqueue_django.models import Attempt, Task

TASK_INDEXES = {
    "aq_task_team_created_idx",
    "aq_task_team_status_idx",
    "aq_task_due_idx",
    "aq_task_wait_deadline_idx",
    "aq_task_lease_idx",
    "aq_task_completed_idx",
}
#: Added after the initial migration: provider polls (0006).
POLL_INDEXES = {"aq_task_poll_due_idx", "aq_task_poll_lease_idx"}
POLL_CONSTRAINTS = {"aq_task_polling_is_bounded"}
#: Added with flow control (0008): partial, over flow-controlled tasks only.
FLOW_INDEXES = {"aq_task_flow_due_idx", "aq_task_flow_key_due_idx", "aq_task_flow_busy_idx"}
#: Added with 0009: a claim reads its own queue's due tasks in its own order.
CLAIM_INDEXES = {"aq_task_queue_due_idx"}
PARTIAL_TASK_INDEXES = {
    "aq_task_due_idx": {"status__in": ["pending", "delayed"]},
    "aq_task_queue_due_idx": {"status__in": ["pending", "delayed"]},
    "aq_task_wait_deadline_idx": {"status": "waiting"},
    "aq_task_lease_idx": {"status": "processing"},
    "aq_task_completed_idx": {"completed_at__isnull": False},
    "aq_task_poll_due_idx": {"status": "polling"},
}
TASK_CONSTRAINTS = {
    "aq_task_idempotency_uniq",
    "aq_task_status_valid",
    "aq_task_priority_range",
    "aq_task_payload_or_body",
    "aq_task_waiting_has_deadline",
    "aq_task_processing_has_lease",
    "aq_task_retry_count_bounded",
}


def _makemigrations_check() -> str:
    out = StringIO()
    # Needs the database (makemigrations checks the applied history).
    # Raises SystemExit(1) when a migration would be written.
    call_command(
        "makemigrations", "asyncqueue", "--check", "--dry-run", stdout=out, stderr=StringIO()
    )
    return out.getvalue()


@pytest.mark.django_db
def test_models_and_migrations_do_not_drift() -> None:
    assert _makemigrations_check().strip() == "No changes detected in app 'asyncqueue'"


@pytest.mark.parametrize(
    "overrides",
    [
        {"DEFAULT_AUTO_FIELD": "django.db.models.AutoField"},
        {"ASYNCQUEUE": {"MAX_RETRIES": 100, "MAX_TIMEOUT": 5, "QUEUES": ["a"]}},
    ],
    ids=["host-auto-field", "asyncqueue-settings"],
)
@pytest.mark.django_db
def test_host_settings_never_change_the_migrations(overrides: dict[str, Any]) -> None:
    with override_settings(**overrides):
        assert _makemigrations_check().strip() == "No changes detected in app 'asyncqueue'"


def test_task_meta_has_the_named_indexes() -> None:
    names = {index.name for index in Task._meta.indexes}
    assert names == TASK_INDEXES | POLL_INDEXES | FLOW_INDEXES | CLAIM_INDEXES


@pytest.mark.parametrize(("name", "condition"), sorted(PARTIAL_TASK_INDEXES.items()))
def test_hot_path_indexes_are_partial(name: str, condition: dict[str, Any]) -> None:
    index = next(i for i in Task._meta.indexes if i.name == name)
    assert index.condition is not None
    assert dict(index.condition.children) == condition


def test_list_indexes_lead_with_team() -> None:
    by_name = {i.name: i for i in Task._meta.indexes}
    assert by_name["aq_task_team_created_idx"].fields == ["team", "-created_at"]
    assert by_name["aq_task_team_status_idx"].fields == ["team", "status", "-created_at"]


def test_task_meta_has_the_named_constraints() -> None:
    assert {c.name for c in Task._meta.constraints} == TASK_CONSTRAINTS | POLL_CONSTRAINTS
    assert {c.name for c in Attempt._meta.constraints} == {"aq_attempt_number_uniq"}


def test_names_fit_every_database() -> None:
    """Django limits index names to 30 characters (Oracle's old limit, enforced by a check)."""
    for index in Task._meta.indexes:
        assert len(index.name) <= 30


def test_initial_migration_declares_the_same_indexes() -> None:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    state = loader.project_state(("asyncqueue", "0001_initial"))
    model_state = state.models["asyncqueue", "task"]
    assert {i.name for i in model_state.options["indexes"]} == TASK_INDEXES
    assert {c.name for c in model_state.options["constraints"]} == TASK_CONSTRAINTS


@pytest.mark.django_db
def test_indexes_and_constraints_exist_in_the_database() -> None:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, Task._meta.db_table)
    assert set(found) >= TASK_INDEXES | FLOW_INDEXES
    for name in TASK_INDEXES | POLL_INDEXES | FLOW_INDEXES | CLAIM_INDEXES:
        assert found[name]["index"] is True
    # Unique constraints with a condition are partial unique indexes in the database.
    assert found["aq_task_idempotency_uniq"]["unique"] is True


@pytest.mark.parametrize("name", sorted(FLOW_INDEXES))
def test_flow_indexes_hold_flow_controlled_tasks_only(name: str) -> None:
    index = next(i for i in Task._meta.indexes if i.name == name)
    assert index.condition is not None
    assert ("flow_key__isnull", False) in index.condition.children
