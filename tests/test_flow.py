"""Flow control at claim time (``services/flow.py``): per team and key, at most
``parallelism`` tasks in flight and at most ``rate`` starts per ``period``; a task over the
limit waits (its due time moves on), is never failed for it, and one key never starves another.

These run on SQLite and on PostgreSQL (the suite's two databases); the threaded race at the
end needs PostgreSQL's row locks. The end-to-end test with three worker processes is in
``test_flow_e2e.py``.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from asyncqueue_django import services
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import FlowLimiter, Task, Team
from asyncqueue_django.services import TaskSpec, engine
from asyncqueue_django.values import FlowControl, Message

URL = "http://127.0.0.1:9/x"


@pytest.fixture(autouse=True)
def sent() -> Any:
    """Record what would be published (the claims under test run in this process)."""
    sent: list[Message] = []
    previous = engine.set_publisher(sent.append)
    yield sent
    engine.set_publisher(previous)


def make(team: Team, key: str | None = "partner", **flow: Any) -> Task:
    control = FlowControl(key, **flow) if key is not None else None
    spec = TaskSpec(target_url=URL, flow_control=control)
    return services.create_task(team, spec).task


def ok() -> CallResult:
    return CallResult(status_code=200, headers={}, body=b"{}", duration_ms=5)


def statuses(key: str = "partner") -> dict[str, int]:
    out: dict[str, int] = {}
    for status in Task.objects.filter(flow_key=key).values_list("status", flat=True):
        out[status] = out.get(status, 0) + 1
    return out


def test_a_batch_claim_starts_at_most_parallelism_and_holds_the_rest_back(team: Team) -> None:
    for _ in range(10):
        make(team, parallelism=3)
    now = timezone.now()
    claimed = services.claim_due_tasks("default", "w1", now=now, limit=16)
    assert len(claimed) == 3
    assert statuses() == {"processing": 3, "pending": 7}
    # The held-back tasks stay pending, due a little later, never failed.
    held = Task.objects.filter(flow_key="partner", status="pending")
    assert all(t.next_attempt_at > now for t in held)
    # Still at the limit: nothing more starts, even when due again.
    later = now + timedelta(seconds=5)
    assert services.claim_due_tasks("default", "w2", now=later, limit=16) == []
    # One finishes: exactly one more starts.
    services.finish_attempt(claimed[0], ok(), worker="w1", now=later)
    more = services.claim_due_tasks("default", "w2", now=later + timedelta(seconds=5), limit=16)
    assert len(more) == 1
    assert statuses() == {"processing": 3, "pending": 6, "completed": 1}


def test_the_single_claim_of_a_message_respects_the_limit_too(team: Team) -> None:
    tasks = [make(team, parallelism=1) for _ in range(3)]
    now = timezone.now()
    assert services.claim_task(tasks[0].pk, "w1", now=now) is not None
    assert services.claim_task(tasks[1].pk, "w2", now=now) is None
    second = Task.objects.get(pk=tasks[1].pk)
    assert second.status == "pending"
    assert second.next_attempt_at > now  # moved on, not failed
    services.finish_attempt(Task.objects.get(pk=tasks[0].pk), ok(), worker="w1", now=now)
    assert services.claim_task(tasks[1].pk, "w2", now=now + timedelta(seconds=5)) is not None


def test_rate_allows_at_most_rate_starts_per_period_then_exactly_when_the_window_frees(
    team: Team, sent: list[Message], django_capture_on_commit_callbacks: Any
) -> None:
    for _ in range(10):
        make(team, rate=4, period=10)
    now = timezone.now()
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        first = services.claim_due_tasks("default", "w1", now=now, limit=16)
    assert len(first) == 4
    for task in first:  # finishing does not free a rate slot: starts count, not runs
        services.finish_attempt(task, ok(), worker="w1", now=now)
    held = Task.objects.filter(flow_key="partner", status="pending")
    # Held back until the window frees a start: the oldest start + period.
    assert {round((t.next_attempt_at - t.updated_at).total_seconds(), 1) for t in held} == {10.0}
    # One wake-up (not one message per task) for that moment.
    wakes = [m for m in sent if m.task_name == engine.WAKE_TASK and m.countdown > 0]
    assert len(wakes) == 1
    assert round(wakes[0].countdown, 1) == 10.0
    assert services.claim_due_tasks("default", "w1", now=now + timedelta(seconds=9)) == []
    second = services.claim_due_tasks("default", "w1", now=now + timedelta(seconds=10.5))
    assert len(second) == 4
    starts = FlowLimiter.objects.get(team=team, key="partner").starts
    assert len(starts) == 4  # the window keeps at most ``rate`` start times


def test_parallelism_and_rate_together(team: Team) -> None:
    for _ in range(6):
        make(team, parallelism=2, rate=3, period=60)
    now = timezone.now()
    claimed = services.claim_due_tasks("default", "w1", now=now)
    assert len(claimed) == 2  # parallelism binds first
    for task in claimed:
        services.finish_attempt(task, ok(), worker="w1", now=now)
    again = services.claim_due_tasks("default", "w1", now=now + timedelta(seconds=5))
    assert len(again) == 1  # then the rate: 3 starts in the minute


def test_two_keys_interleave_and_ordinary_tasks_are_not_held(team: Team) -> None:
    for _ in range(20):
        make(team, "a", parallelism=2)
    for _ in range(20):
        make(team, "b", parallelism=2)
    for _ in range(3):
        make(team, None)
    claimed = services.claim_due_tasks("default", "w1", limit=16)
    keys = sorted(str(t.flow_key) for t in claimed)
    assert keys == ["None", "None", "None", "a", "a", "b", "b"]


def test_keys_are_per_team(team: Team) -> None:
    other, _ = services.get_or_create_team("other team")
    make(team, parallelism=1)
    make(team, parallelism=1)
    make(other, parallelism=1)
    claimed = services.claim_due_tasks("default", "w1")
    assert sorted(t.team_id for t in claimed) == sorted([team.pk, other.pk])


def test_a_key_at_its_limit_does_not_starve_another_key(team: Team) -> None:
    """Twenty passes with key "busy" always full: "quiet" still gets its turn every time."""
    for _ in range(40):
        make(team, "busy", parallelism=1)
    now = timezone.now()
    services.claim_due_tasks("default", "w", now=now)  # "busy" at its limit from now on
    for i in range(5):
        make(team, "quiet", parallelism=1)
        moment = now + timedelta(seconds=5 * (i + 1))
        claimed = services.claim_due_tasks("default", "w", now=moment)
        assert [t.flow_key for t in claimed] == ["quiet"]
        services.finish_attempt(claimed[0], ok(), worker="w", now=moment)


@override_settings(ASYNCQUEUE={"FLOW_CONTROL_DELAY": 2})
def test_the_parallelism_delay_is_a_setting(team: Team) -> None:
    make(team, parallelism=1)
    make(team, parallelism=1)
    now = timezone.now()
    services.claim_due_tasks("default", "w", now=now)
    held = Task.objects.get(flow_key="partner", status="pending")
    # Moved on by the delay from the moment it was held back (the clock read under the lock).
    assert held.next_attempt_at - held.updated_at == timedelta(seconds=2)
    assert held.updated_at >= now


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_racing_claims_on_many_connections_never_exceed_parallelism(team: Team) -> None:
    for _ in range(60):
        make(team, parallelism=4)
    peak = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        nonlocal peak
        try:
            for _ in range(30):
                claimed = services.claim_due_tasks("default", f"w{n}", limit=8)
                for t in Task.objects.filter(pk__in=[c.pk for c in claimed]):
                    assert t.status == "processing"
                with lock:
                    busy = Task.objects.filter(flow_key="partner", status="processing").count()
                    peak = max(peak, busy)
                for task in claimed:
                    services.finish_attempt(task, ok(), worker=f"w{n}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert 0 < peak <= 4
    assert statuses().get("failed", 0) == 0


def test_passes_that_hold_a_key_again_send_no_second_wake_up(
    team: Team, sent: list[Message], django_capture_on_commit_callbacks: Any
) -> None:
    for _ in range(30):
        make(team, parallelism=2)
    now = timezone.now()
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.claim_due_tasks("default", "w", now=now, limit=8)
        # Passes woken by finished tasks or new ones find the key full and hold its rows again.
        for i in range(1, 4):
            services.claim_due_tasks("default", "w", now=now + timedelta(seconds=0.1 * i))
    wakes = [m for m in sent if m.task_name == engine.WAKE_TASK and m.countdown > 0]
    assert len(wakes) == 1
    assert FlowLimiter.objects.get(team=team, key="partner").wake_at is not None


def test_a_sweep_re_sends_a_keys_backlog_as_one_wake_up_not_one_message_per_task(
    team: Team, sent: list[Message], django_capture_on_commit_callbacks: Any
) -> None:
    for _ in range(50):
        make(team, parallelism=2)
    plain = make(team, None)
    Task.objects.update(dispatched_at=None)  # as if every message had been lost
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.dispatch_due() == 51
    # One wake-up for the queue stands for the plain task and the key's backlog alike.
    assert plain.pk
    assert [(m.task_name, m.args[:2]) for m in sent] == [(engine.WAKE_TASK, ("task", "default"))]
