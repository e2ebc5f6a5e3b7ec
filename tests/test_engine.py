"""The shared engine, driven by a kind of work it was not written for: a new kind is a small
adapter (here a "tick" over the task table that needs no HTTP answer), and claim, lease,
finish, dispatch, the sweeps and publishing all come with the engine."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from asyncqueue_django import states
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import Attempt, Task, Team
from asyncqueue_django.services import TaskSpec, create_task, engine
from asyncqueue_django.services.engine import AttemptRecord, Outcome, WorkKind
from asyncqueue_django.services.tables import TASKS
from asyncqueue_django.states import AttemptOutcome, TaskStatus
from asyncqueue_django.values import CallOutcome, Message


class Ticks(WorkKind[Task]):
    name = "tick"
    task_name = "asyncqueue.tests.tick"
    table = TASKS
    claim_from = states.RUNNABLE
    claim_to = TaskStatus.PROCESSING
    in_flight = states.IN_FLIGHT
    message_fields = ("queue", "priority")

    def message(self, pk: Any, *values: Any, countdown: float = 0) -> Message:
        return Message(self.task_name, (str(pk),), values[0], values[1], countdown)

    def lease_seconds(self, row: Task) -> float:
        return 10.0

    def decide(self, row: Task, call: CallOutcome, now: datetime) -> Outcome:
        return Outcome(TaskStatus.COMPLETED, {"completed_at": now}, None, AttemptOutcome.SUCCEEDED)

    def decide_lost(self, row: Task, now: datetime) -> Outcome:
        fields = {"error": "tick lost", "completed_at": now}
        return Outcome(TaskStatus.FAILED, fields, None, AttemptOutcome.WORKER_LOST)

    def record_attempt(self, row: Task, attempt: AttemptRecord) -> None:
        Attempt.objects.create(
            task_id=row.pk,
            number=attempt.number,
            started_at=attempt.started_at,
            error=attempt.error,
            outcome=attempt.outcome,
            worker=attempt.worker,
        )


TICKS = Ticks()


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[Message]:
    sent: list[Message] = []
    monkeypatch.setattr(engine, "publisher", sent.append)
    return sent


def new_task(team: Team) -> Task:
    return create_task(team, TaskSpec(target_url="http://127.0.0.1:9/")).task


def test_a_new_kind_claims_and_finishes_through_the_engine(team: Team) -> None:
    task, now = new_task(team), timezone.now()
    claimed = engine.claim(TICKS, task.pk, "w1", now)
    assert claimed is not None
    assert (claimed.status, claimed.leased_by, claimed.attempt_count) == ("processing", "w1", 1)
    assert engine.claim(TICKS, task.pk, "w2", now) is None  # one claim wins
    assert engine.finish(TICKS, claimed, CallResult(status_code=200), worker="w1", now=now) == (
        "completed"
    )
    task.refresh_from_db()
    assert (task.status, task.lease_expires_at) == ("completed", None)
    assert Attempt.objects.get(task=task).outcome == "succeeded"
    # A late report of the same attempt finds its lease gone and writes nothing.
    assert engine.finish(TICKS, claimed, CallResult(status_code=200), worker="w1", now=now) is None


def test_a_new_kind_is_recovered_and_dispatched_by_the_engine(
    team: Team, published: list[Message], django_capture_on_commit_callbacks: Any
) -> None:
    lost, due, now = new_task(team), new_task(team), timezone.now()
    assert engine.claim(TICKS, lost.pk, "dead", now) is not None
    later = now + timedelta(seconds=11)
    assert engine.recover(TICKS, later) == 1
    lost.refresh_from_db()
    assert (lost.status, lost.error) == ("failed", "tick lost")
    assert Attempt.objects.get(task=lost).outcome == "worker_lost"

    Task.objects.filter(pk=due.pk).update(dispatched_at=None)
    queries = engine.sweep_querysets(TICKS, now)
    assert list(queries["due"].values_list("pk", flat=True)) == [due.pk]
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.dispatch(TICKS, queries["due"], now) == 1
    # Published on commit, by name, on the task's queue with its priority.
    assert published == [Message("asyncqueue.tests.tick", (str(due.pk),), "default", 5)]
    due.refresh_from_db()
    assert due.dispatched_at == now
