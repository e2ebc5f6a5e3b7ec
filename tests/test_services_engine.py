"""The execution write path: claims, outcomes, leases and the dispatch/recovery sweeps."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from pytest_httpserver import HTTPServer

from asyncqueue_django import services, tasks
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import Attempt, Task, Team
from asyncqueue_django.services import TaskSpec
from asyncqueue_django.values import Message
from tests.worker import Worker, broker_unreachable, wait_for


def make_task(team: Team, url: str = "http://127.0.0.1:9/x", **spec: object) -> Task:
    return services.create_task(team, TaskSpec(target_url=url, **spec)).task  # type: ignore[arg-type]


def ok(status: int = 200, body: bytes = b"{}") -> CallResult:
    return CallResult(
        status_code=status, headers={"Content-Type": "application/json"}, body=body, duration_ms=12
    )


# ---------------------------------------------------------------- claim


def test_claim_moves_pending_to_processing_with_a_lease(team: Team) -> None:
    task = make_task(team, timeout=10)
    now = timezone.now()
    claimed = services.claim_task(task.pk, "w1", now=now)
    assert claimed is not None
    assert claimed.status == "processing"
    assert claimed.leased_by == "w1"
    assert claimed.attempt_count == 1
    assert claimed.started_at == now
    assert claimed.lease_expires_at > now + timedelta(seconds=10)


def test_duplicate_or_late_message_is_a_no_op(team: Team) -> None:
    task = make_task(team)
    assert services.claim_task(task.pk, "w1") is not None
    assert services.claim_task(task.pk, "w2") is None  # duplicate message
    services.finish_attempt(Task.objects.get(pk=task.pk), ok(), worker="w1")
    assert services.claim_task(task.pk, "w3") is None  # late message for a finished task
    assert Task.objects.get(pk=task.pk).attempt_count == 1


def test_a_delayed_task_is_not_claimed_before_it_is_due(team: Team) -> None:
    now = timezone.now()
    task = make_task(team, delay_until=now + timedelta(minutes=5))
    assert task.status == "delayed"
    assert services.claim_task(task.pk, "w1", now=now) is None
    assert services.claim_task(task.pk, "w1", now=now + timedelta(minutes=5)) is not None


def test_cancelled_task_is_never_claimed(team: Team) -> None:
    task = make_task(team)
    services.cancel_task(team, task.pk)
    assert services.claim_task(task.pk, "w1") is None


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_one_task_make_one_call(team: Team, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/once").respond_with_data("ok")
    # A queue no test worker consumes: only the four threads below compete for the task.
    task = make_task(team, url=httpserver.url_for("/once"), queue="unconsumed")
    barrier = threading.Barrier(4)
    results: list[object] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(tasks.execute_task.run(str(task.pk)))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results)) == ["None", "None", "None", "completed"]
    assert len(httpserver.log) == 1
    assert Attempt.objects.filter(task=task).count() == 1


# ---------------------------------------------------------------- outcomes


def test_success_completes_with_result(team: Team) -> None:
    task = services.claim_task(make_task(team).pk, "w1")
    assert task is not None
    status = services.finish_attempt(task, ok(body=b'{"done": true}'), worker="w1")
    task.refresh_from_db()
    assert status == task.status == "completed"
    assert task.result == {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": {"done": True},
        "duration": 12,
    }
    assert task.completed_at is not None
    assert task.lease_expires_at is None


def test_non_json_and_truncated_bodies_are_stored_as_text(team: Team) -> None:
    task = services.claim_task(make_task(team).pk, "w1")
    assert task is not None
    result = CallResult(
        status_code=200, headers={"Content-Type": "text/html"}, body=b"<b>hi</b>\x00", duration_ms=1
    )
    services.finish_attempt(task, result, worker="w1")
    task.refresh_from_db()
    assert task.result["body"] == "<b>hi</b>\ufffd"


def test_retryable_failure_schedules_a_delayed_retry(team: Team) -> None:
    task = services.claim_task(make_task(team, max_retries=2).pk, "w1")
    assert task is not None
    now = timezone.now()
    status = services.finish_attempt(
        task, CallResult(status_code=503, duration_ms=5), worker="w1", now=now
    )
    task.refresh_from_db()
    assert status == task.status == "delayed"
    assert task.retry_count == 1
    # tests.settings: RETRY_BASE_DELAY 0.2 s, no jitter.
    assert task.next_attempt_at == now + timedelta(seconds=0.2)
    attempt = Attempt.objects.get(task=task)
    assert (attempt.number, attempt.status_code, attempt.outcome) == (1, 503, "retrying")


def test_retry_after_is_honoured_up_to_the_cap(team: Team) -> None:
    now = timezone.now()
    first = services.claim_task(make_task(team).pk, "w1")
    assert first is not None
    services.finish_attempt(
        first, CallResult(status_code=429, retry_after=30), worker="w1", now=now
    )
    first.refresh_from_db()
    assert first.next_attempt_at == now + timedelta(seconds=30)
    assert first.dispatched_at == now  # 30 s <= COUNTDOWN_MAX: sent now with a countdown

    second = services.claim_task(make_task(team).pk, "w1")
    assert second is not None
    with override_settings(
        ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": True, "RETRY_JITTER": 0, "RETRY_AFTER_MAX": 100}
    ):
        services.finish_attempt(
            second, CallResult(status_code=503, retry_after=7200), worker="w1", now=now
        )
    second.refresh_from_db()
    assert second.next_attempt_at == now + timedelta(seconds=100)


def test_long_backoff_waits_for_the_due_sweep(team: Team) -> None:
    task = services.claim_task(make_task(team).pk, "w1")
    assert task is not None
    now = timezone.now()
    services.finish_attempt(
        task, CallResult(status_code=503, retry_after=600), worker="w1", now=now
    )
    task.refresh_from_db()
    assert task.status == "delayed"
    assert task.next_attempt_at == now + timedelta(seconds=600)
    assert task.dispatched_at is None
    assert services.dispatch_due(now=now + timedelta(seconds=599)) == 0
    assert services.dispatch_due(now=now + timedelta(seconds=601)) == 1
    task.refresh_from_db()
    assert task.dispatched_at == now + timedelta(seconds=601)
    assert services.dispatch_due(now=now + timedelta(seconds=602)) == 0  # sent once


@pytest.mark.parametrize(
    ("result", "error"),
    [
        (CallResult(status_code=503), "HTTP 503 after 2 attempts"),
        (
            CallResult(error="connection refused", error_kind="connection"),
            "connection refused after 2 attempts",
        ),
        (CallResult(status_code=404), "HTTP 404 (not retried)"),
        (CallResult(error="blocked: x", error_kind="blocked"), "blocked: x (not retried)"),
    ],
)
def test_exhausted_or_fatal_failures_fail_with_readable_errors(
    team: Team, result: CallResult, error: str
) -> None:
    task = make_task(team, max_retries=1)
    Task.objects.filter(pk=task.pk).update(retry_count=1)
    claimed = services.claim_task(task.pk, "w1")
    assert claimed is not None
    assert services.finish_attempt(claimed, result, worker="w1") == "failed"
    claimed.refresh_from_db()
    assert claimed.error == error


def test_result_of_a_worker_that_lost_its_claim_is_discarded(team: Team) -> None:
    task = services.claim_task(make_task(team).pk, "w1")
    assert task is not None
    later = timezone.now() + timedelta(hours=1)
    assert services.recover_stale_leases(now=later) == 1
    assert services.finish_attempt(task, ok(), worker="w1") is None
    task.refresh_from_db()
    assert task.status == "delayed"
    assert list(Attempt.objects.filter(task=task).values_list("outcome", flat=True)) == [
        "worker_lost"
    ]


# ---------------------------------------------------------------- recovery


def test_expired_lease_is_retried_and_recorded_as_worker_lost(team: Team) -> None:
    task = services.claim_task(make_task(team, max_retries=3).pk, "dead-worker")
    assert task is not None
    now = task.lease_expires_at + timedelta(seconds=1)
    assert services.recover_stale_leases(now=task.lease_expires_at - timedelta(seconds=1)) == 0
    assert services.recover_stale_leases(now=now) == 1
    task.refresh_from_db()
    assert task.status == "delayed"
    assert task.retry_count == 1
    attempt = Attempt.objects.get(task=task)
    assert (attempt.outcome, attempt.worker, attempt.error) == (
        "worker_lost",
        "dead-worker",
        "worker lost (lease expired)",
    )
    assert services.recover_stale_leases(now=now) == 0  # once


def test_expired_lease_without_retries_left_fails(team: Team) -> None:
    task = services.claim_task(make_task(team, max_retries=0).pk, "dead-worker")
    assert task is not None
    services.recover_stale_leases(now=task.lease_expires_at + timedelta(seconds=1))
    task.refresh_from_db()
    assert task.status == "failed"
    assert task.error == "worker lost after 1 attempt"


def test_lost_dispatch_is_sent_again_after_the_grace_period(team: Team) -> None:
    task = make_task(team)
    created = task.dispatched_at
    assert created is not None
    assert services.redispatch_lost(now=created + timedelta(seconds=30)) == 0
    assert services.redispatch_lost(now=created + timedelta(seconds=61)) == 1
    task.refresh_from_db()
    assert task.dispatched_at == created + timedelta(seconds=61)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_task_created_while_broker_is_down_runs_after_the_recovery_sweep(
    client: object, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/later").respond_with_data("ok")
    with broker_unreachable():
        response = client.post(  # type: ignore[attr-defined]
            "/v1/tasks", {"targetUrl": httpserver.url_for("/later")}, format="json"
        )
    assert response.status_code == 201
    task_id = response.json()["task"]["id"]
    task = Task.objects.get(pk=task_id)
    assert task.status == "pending"
    assert httpserver.log == []
    sent = services.redispatch_lost(now=task.dispatched_at + timedelta(seconds=61))
    assert sent == 1
    wait_for(lambda: Task.objects.filter(pk=task_id, status="completed").exists())
    assert len(httpserver.log) == 1


@pytest.mark.parametrize(
    ("setting", "code", "expected"),
    [
        (False, 404, "failed"),
        (True, 404, "completed"),
        (True, 400, "completed"),
        (True, 429, "delayed"),  # retried either way
        (True, 408, "delayed"),
        (True, 503, "delayed"),
    ],
)
def test_complete_on_client_error_counts_a_4xx_as_delivered(
    team: Team, setting: bool, code: int, expected: str
) -> None:
    task = services.claim_task(make_task(team, max_retries=2).pk, "w1")
    assert task is not None
    with override_settings(ASYNCQUEUE={"COMPLETE_ON_CLIENT_ERROR": setting}):
        status = services.finish_attempt(task, ok(status=code, body=b'{"e": 1}'), worker="w1")
    task.refresh_from_db()
    assert status == task.status == expected
    if expected == "completed":
        assert task.result["statusCode"] == code
        assert task.result["body"] == {"e": 1}
        assert not task.error
        assert Attempt.objects.get(task=task).outcome == "succeeded"
    elif expected == "failed":
        assert task.error == f"HTTP {code} (not retried)"


def test_complete_on_client_error_puts_a_signal_task_in_waiting(team: Team) -> None:
    task = services.claim_task(make_task(team, wait_for_signal=True).pk, "w1")
    assert task is not None
    with override_settings(ASYNCQUEUE={"COMPLETE_ON_CLIENT_ERROR": True}):
        status = services.finish_attempt(task, ok(status=404), worker="w1")
    assert status == "waiting"


# ---------------------------------------------------------------- batches and wake-ups


def test_a_batch_claim_takes_due_tasks_of_its_queue_highest_priority_first(team: Team) -> None:
    now = timezone.now()
    low = [make_task(team, queue="batch", priority=2) for _ in range(3)]
    high = make_task(team, queue="batch", priority=9)
    later = make_task(team, queue="batch", delay_until=now + timedelta(minutes=5))
    other = make_task(team, queue="elsewhere")
    first = services.claim_due_tasks("batch", "w1", now=now, limit=2)
    assert first[0].pk == high.pk
    assert len(first) == 2
    assert all(t.status == "processing" and t.leased_by == "w1" for t in first)
    assert all(t.team == team for t in first)  # the signing team comes with the claim
    rest = services.claim_due_tasks("batch", "w2", now=now, limit=10)
    assert {t.pk for t in first} | {t.pk for t in rest} == {high.pk, *(t.pk for t in low)}
    assert services.claim_due_tasks("batch", "w3", now=now) == []  # a duplicate wake-up
    assert Task.objects.get(pk=later.pk).status == "delayed"
    assert Task.objects.get(pk=other.pk).status == "pending"
    for task in [*first, *rest]:
        stored = Task.objects.get(pk=task.pk)
        assert stored.attempt_count == task.attempt_count == 1
        assert stored.lease_expires_at == task.lease_expires_at
        assert stored.lease_expires_at > now + timedelta(seconds=task.timeout)


def test_batch_size_bounds_a_wake_up(team: Team) -> None:
    for _ in range(5):
        make_task(team, queue="bounded")
    with override_settings(ASYNCQUEUE={"BATCH_SIZE": 3}):
        assert len(services.claim_due_tasks("bounded", "w1")) == 3  # full: passes a wake-up on
        assert len(services.claim_due_tasks("bounded", "w1")) == 2


def test_an_early_signal_during_the_call_is_applied_by_the_finish(team: Team) -> None:
    created = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/x", wait_for_signal=True)
    )
    task = services.claim_task(created.task.pk, "w1")
    assert task is not None
    assert created.signal_token is not None
    services.signal_task(created.signal_token, "completed", result={"paid": True})
    # The claimed row in memory predates the signal; the finish must not overwrite it.
    assert services.finish_attempt(task, ok(), worker="w1") == "completed"
    stored = Task.objects.get(pk=task.pk)
    assert stored.result == {"paid": True}
    assert Attempt.objects.filter(task=stored).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the one-statement path is PostgreSQL's"
)
def test_a_callback_is_one_statement_to_claim_and_one_to_finish(team: Team) -> None:
    from django.test.utils import CaptureQueriesContext

    task = make_task(team, queue="unconsumed", on_complete_url="http://127.0.0.1:9/hook")
    with CaptureQueriesContext(connection) as claim:
        claimed = services.claim_task(task.pk, "w1")
    assert claimed is not None
    with CaptureQueriesContext(connection) as finish:
        assert services.finish_attempt(claimed, ok(), worker="w1") == "completed"
    assert len(claim.captured_queries) == 1
    assert len(finish.captured_queries) == 1
    assert Attempt.objects.filter(task=task).count() == 1
    assert task.webhook_deliveries.count() == 1  # the terminal event, in the same statement


def test_a_transaction_making_many_tasks_due_sends_one_wake_up(
    team: Team, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    from asyncqueue_django.services import engine

    sent: list[tuple[str, tuple[object, ...], str, int]] = []
    monkeypatch.setattr(
        engine,
        "publisher",
        lambda m: sent.append((m.task_name, m.args[:2], m.queue, m.priority)),
    )
    with django_capture_on_commit_callbacks(execute=True) as hooks:
        for priority in (3, 9, 5):
            for _ in range(20):
                make_task(team, queue="bulk", priority=priority)
    assert len(hooks) == 1
    assert sent == [("asyncqueue.run_due", ("task", "bulk"), "bulk", 9)]  # the top priority


@pytest.mark.parametrize("countdown", [0.05, 0.2, 1, 3.7, 30, 60, 3600])
def test_a_wake_up_for_later_is_never_early_and_at_most_an_eighth_late(countdown: float) -> None:
    from asyncqueue_django.services.engine import wake_slot

    for start in (1_700_000_000.0, 1_700_000_000.123, 1_700_000_017.999):
        slot = wake_slot(countdown, now=start)
        assert slot is not None
        # The grid's step: an eighth of the wait, at least 1/64 s, at most 8 s.
        assert 0 <= slot - (start + countdown) <= max(min(countdown / 8, 8), 1 / 64)
    assert wake_slot(0) is None
    if countdown <= 64:  # the longest broker countdown is COUNTDOWN_MAX (60 s)
        # Due times up to 5 % apart (a retry's jitter) share one or two slots.
        slots = {wake_slot(countdown * (1 + i / 1000), now=1_700_000_000.0) for i in range(50)}
        assert len(slots) <= 2


def test_a_wake_up_runs_nothing_due_after_the_time_it_was_sent_for(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wake-up carries the time it was sent for; its batch leaves a row due a moment later
    (a retry in half a second, the next poll of another task) to that row's own wake-up, so
    nothing starts early. A wake-up without that time (from an older release) still allows
    for clock skew."""
    from asyncqueue_django.services import engine
    from asyncqueue_django.services.callbacks import CALLBACKS

    queue = "unconsumed-early"
    due_now = make_task(team, queue=queue, max_retries=0)
    soon = make_task(team, queue=queue)
    Task.objects.filter(pk=soon.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=0.5))
    sent: list[Message] = []
    monkeypatch.setattr(engine, "publisher", sent.append)
    engine.wakeups.add(CALLBACKS, queue, 5)  # what the first task's commit sent
    engine.wakeups.flush()
    (message,) = [m for m in sent if m.args[:2] == ("task", queue)]
    assert tasks.run_due.run(*message.args) == 1  # the due one, called (and refused) once
    assert Task.objects.get(pk=due_now.pk).attempt_count == 1
    assert Task.objects.get(pk=soon.pk).status == "pending"  # not half a second early
    # A slot's wake-up is due by its slot.
    later = CALLBACKS.wake_message(queue, 5, countdown=0.25)
    assert float(later.args[2]) == pytest.approx(time.time() + 0.25, abs=1)
    # An older release's wake-up (kind and queue only) claims with the clock-skew allowance.
    assert tasks.run_due.run("task", queue) == 1
    assert Task.objects.get(pk=soon.pk).attempt_count == 1


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite reads, then claims")
def test_a_row_run_and_moved_on_after_the_batch_picked_it_is_not_claimed_early(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite claims a batch by reading the due rows, then claiming each. A row another worker
    ran and moved on (due again in half a second) between the two is left for later, not
    claimed within the clock-skew allowance: it was polled twice in 0.1 s that way."""
    from asyncqueue_django.services import engine
    from asyncqueue_django.services.callbacks import CALLBACKS

    queue = "unconsumed-picked"
    task = make_task(team, queue=queue)
    original = engine._claim_read_then_update

    def after_another_worker(*args: Any, **kwargs: Any) -> Any:
        Task.objects.filter(pk=task.pk).update(
            next_attempt_at=timezone.now() + timedelta(seconds=0.5),
            attempt_count=1,
            status="delayed",
        )
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "_claim_read_then_update", after_another_worker)
    now = timezone.now()
    assert engine.claim_batch(CALLBACKS, queue, "w", now, 16, due_by=now) == []
    assert Task.objects.get(pk=task.pk).status == "delayed"


@pytest.mark.django_db(transaction=True)
def test_a_batchs_retries_and_events_share_their_wake_ups(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of 16: 8 retried (jittered backoff), 8 completed with a webhook event each. The
    finish wakes the queue for the retries' due slots and the webhook queue once, instead of
    a message per retry and per event."""
    from asyncqueue_django.services import engine

    queue = "unconsumed-retries"
    created = [
        make_task(team, queue=queue, on_complete_url="http://127.0.0.1:9/h") for _ in range(16)
    ]
    claimed = services.claim_due_tasks(queue, "w1", limit=16)
    assert {t.pk for t in claimed} == {t.pk for t in created}
    sent: list[Message] = []
    monkeypatch.setattr(engine, "publisher", sent.append)
    with override_settings(
        ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": True, "RETRY_BASE_DELAY": 1, "RETRY_JITTER": 0.1}
    ):
        statuses = services.finish_attempts(
            [(t, ok(503 if i % 2 else 200)) for i, t in enumerate(claimed)], worker="w1"
        )
    assert sorted(map(str, statuses)) == ["completed"] * 8 + ["delayed"] * 8
    assert {m.task_name for m in sent} == {"asyncqueue.run_due"}  # no message per row
    # (The full batch's pass-on wake-up, countdown 0, may be published late by the sender.)
    retries = [m for m in sent if m.args[:2] == ("task", queue) and m.countdown > 0]
    assert 1 <= len(retries) <= 5  # 0.9 to 1.1 s on grids of 1/16 s (under 1 s) and 1/8 s
    assert all(0.8 < m.countdown <= 1.1 + 1 / 8 for m in retries)
    assert [(m.args[:2], m.countdown) for m in sent if m.args[0] == "webhook"] == [
        (("webhook", "default"), 0)
    ]


def test_the_sweeps_wake_each_queue_and_priority_once(
    team: Team, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    from asyncqueue_django.services import engine

    for queue, priority in [("qa", 2), ("qb", 5), ("qa", 9)]:
        for _ in range(10):
            make_task(team, queue=queue, priority=priority)
    now = timezone.now()
    Task.objects.update(dispatched_at=None)  # as if they were delayed and came due
    sent: list[Message] = []
    monkeypatch.setattr(engine, "publisher", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.dispatch_due(now=now) == 30
    assert [(m.task_name, m.args[:2], m.queue, m.priority) for m in sent] == [
        ("asyncqueue.run_due", ("task", "qa"), "qa", 9),  # highest priority first
        ("asyncqueue.run_due", ("task", "qb"), "qb", 5),
        ("asyncqueue.run_due", ("task", "qa"), "qa", 2),
    ]
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):  # lost: sent again, once a queue
        assert services.redispatch_lost(now=now + timedelta(minutes=5)) == 30
    assert len(sent) == 3


def test_wake_ups_that_come_in_while_one_is_published_share_one_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asyncqueue_django.services import engine
    from asyncqueue_django.services.callbacks import CALLBACKS

    sent: list[str] = []
    publishing = threading.Event()

    def slow_broker(message: Message) -> None:
        publishing.set()
        time.sleep(0.2)  # a slow broker: commits keep coming meanwhile
        sent.append(message.queue)

    monkeypatch.setattr(engine, "publisher", slow_broker)
    first = threading.Thread(target=engine.wakeups.add, args=(CALLBACKS, "busy", 5))
    first.start()
    assert publishing.wait(5)
    started = time.monotonic()
    for _ in range(30):  # other commits while the first wake-up is on its way
        engine.wakeups.add(CALLBACKS, "busy", 5)
    assert time.monotonic() - started < 0.1  # they did not wait for the broker
    first.join()
    wait_for(lambda: len(sent) == 2, 5)
    time.sleep(0.3)
    assert sent == ["busy", "busy"]  # the first, then one for the 30


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the one-statement path is PostgreSQL's"
)
def test_a_webhook_delivery_is_one_statement_to_claim_and_one_to_finish(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test.utils import CaptureQueriesContext

    from asyncqueue_django import outbound
    from asyncqueue_django.services import engine

    monkeypatch.setattr(engine, "publisher", lambda message: None)  # no worker takes the event

    task = make_task(team, queue="unconsumed", on_complete_url="http://127.0.0.1:9/hook")
    claimed = services.claim_task(task.pk, "w1")
    assert claimed is not None
    services.finish_attempt(claimed, ok(), worker="w1")
    delivery = task.webhook_deliveries.get()
    with CaptureQueriesContext(connection) as queries:
        leased = services.claim_webhook(delivery.pk, "w1")
        assert leased is not None
        body = outbound.render_webhook(leased)  # the task came with the claim
        assert leased.task.team == team
        status = services.finish_webhook_attempt(leased, ok(), worker="w1", body=body)
    assert status == "delivered"
    assert len(queries.captured_queries) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="query plans: PostgreSQL")
def test_a_claim_reads_its_own_queue_not_other_queues_backlogs(team: Team) -> None:
    """A backlog of due tasks on another queue (paused, or consumed by no worker) must not be
    read by every claim on this one: the claim walks ``aq_task_queue_due_idx`` in its own
    order and stops at ``BATCH_SIZE``."""
    from django.test.utils import CaptureQueriesContext

    make_task(team, queue="backlog", payload={"i": 0})
    with connection.cursor() as cursor:  # 5,000 more due tasks on "backlog", cheaply
        columns = ", ".join(f'"{f.column}"' for f in Task._meta.concrete_fields if f.column != "id")
        cursor.execute(
            f"INSERT INTO asyncqueue_task (id, {columns}) "
            f"SELECT (md5(random()::text || g::text))::uuid, {columns} "
            "FROM asyncqueue_task, generate_series(1, 5000) AS g WHERE queue = 'backlog'"
        )
        cursor.execute("ANALYZE asyncqueue_task")
    for i in range(20):
        make_task(team, queue="mine", payload={"i": i})
    with CaptureQueriesContext(connection) as captured:
        claimed = services.claim_due_tasks("mine", "w", limit=16)
    assert len(claimed) == 16
    claim_sql = next(q["sql"] for q in captured.captured_queries if "RETURNING" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + claim_sql)
        plan = str(cursor.fetchone()[0])
    assert "aq_task_queue_due_idx" in plan, plan
    assert "'backlog'" not in claim_sql
