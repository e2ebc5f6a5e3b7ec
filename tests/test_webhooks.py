"""onComplete webhook events: one per terminal transition, the delivery state machine, sweeps,
re-send, secret rotation, the request we send, the API view and the admin.

These run without a worker (the end-to-end tests are in ``test_webhooks_e2e.py``): Celery
messages are sent on commit, and a plain ``db`` test never commits.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from asyncqueue_django import outbound, services, signing
from asyncqueue_django.exceptions import InvalidTransition, WebhookInFlight, WebhookNotFound
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import Task, Team, WebhookAttempt, WebhookDelivery
from asyncqueue_django.services import TaskSpec, engine
from asyncqueue_django.signals import task_finished
from asyncqueue_django.values import Message

HOOK = "http://127.0.0.1:9/hook"  # nothing listens: a delivery attempt here fails fast
TARGET = "http://127.0.0.1:9/target"


def make(team: Team, url: str | None = HOOK, **spec: Any) -> services.CreatedTask:
    return services.create_task(team, TaskSpec(target_url=TARGET, on_complete_url=url, **spec))


def claimed(team: Team, url: str | None = HOOK, **spec: Any) -> Task:
    task = services.claim_task(make(team, url, **spec).task.pk, "w1")
    assert task is not None
    return task


def ok(status: int = 200) -> CallResult:
    return CallResult(status_code=status, body=b"{}", duration_ms=7)


def waiting(team: Team, url: str | None = HOOK, max_wait: int = 3600) -> tuple[Task, str]:
    created = make(team, url, wait_for_signal=True, max_wait_time=max_wait)
    task = services.claim_task(created.task.pk, "w1")
    assert task is not None
    assert services.finish_attempt(task, ok(), worker="w1") == "waiting"
    task.refresh_from_db()
    assert created.signal_token is not None
    return task, created.signal_token


def events(task_id: Any) -> list[str]:
    return list(WebhookDelivery.objects.filter(task_id=task_id).values_list("event", flat=True))


# ---------------------------------------------------------------- every terminal path

Path = Callable[[Team, "str | None"], tuple[Any, str]]


def path_cancel_pending(team: Team, url: str | None) -> tuple[Any, str]:
    task = make(team, url).task
    services.cancel_task(team, task.pk)
    return task.pk, "task.cancelled"


def path_cancel_delayed(team: Team, url: str | None) -> tuple[Any, str]:
    task = make(team, url, delay_until=timezone.now() + timedelta(hours=1)).task
    services.cancel_task(team, task.pk)
    return task.pk, "task.cancelled"


def path_cancel_waiting(team: Team, url: str | None) -> tuple[Any, str]:
    task, _ = waiting(team, url)
    services.cancel_task(team, task.pk)
    return task.pk, "task.cancelled"


def path_success(team: Team, url: str | None) -> tuple[Any, str]:
    task = claimed(team, url)
    assert services.finish_attempt(task, ok(), worker="w1") == "completed"
    return task.pk, "task.completed"


def path_fatal_failure(team: Team, url: str | None) -> tuple[Any, str]:
    task = claimed(team, url)
    assert services.finish_attempt(task, ok(404), worker="w1") == "failed"
    return task.pk, "task.failed"


def path_exhausted_retries(team: Team, url: str | None) -> tuple[Any, str]:
    task = claimed(team, url, max_retries=1)
    assert services.finish_attempt(task, ok(503), worker="w1") == "delayed"  # no event yet
    assert events(task.pk) == []
    later = timezone.now() + timedelta(seconds=5)
    again = services.claim_task(task.pk, "w1", now=later)
    assert again is not None
    assert services.finish_attempt(again, ok(503), worker="w1", now=later) == "failed"
    return task.pk, "task.failed"


def path_worker_lost(team: Team, url: str | None) -> tuple[Any, str]:
    task = claimed(team, url, max_retries=0)
    assert task.lease_expires_at is not None
    assert services.recover_stale_leases(now=task.lease_expires_at + timedelta(seconds=1)) == 1
    return task.pk, "task.failed"


def path_signal_completed(team: Team, url: str | None) -> tuple[Any, str]:
    task, token = waiting(team, url)
    assert services.signal_task(token, "completed", result={"ok": 1}).applied
    return task.pk, "task.completed"


def path_signal_failed(team: Team, url: str | None) -> tuple[Any, str]:
    task, token = waiting(team, url)
    assert services.signal_task(token, "failed", error="declined").applied
    return task.pk, "task.failed"


def path_early_signal(team: Team, url: str | None) -> tuple[Any, str]:
    created = make(team, url, wait_for_signal=True)
    assert created.signal_token is not None
    assert not services.signal_task(created.signal_token, "failed", error="early").applied
    task = services.claim_task(created.task.pk, "w1")
    assert task is not None
    assert services.finish_attempt(task, ok(), worker="w1") == "failed"
    return task.pk, "task.failed"


def path_expiry_sweep(team: Team, url: str | None) -> tuple[Any, str]:
    task, _ = waiting(team, url, max_wait=60)
    assert task.wait_deadline is not None
    assert services.expire_overdue(now=task.wait_deadline + timedelta(seconds=1)) == 1
    return task.pk, "task.timeout"


def path_signal_after_deadline(team: Team, url: str | None) -> tuple[Any, str]:
    task, token = waiting(team, url, max_wait=60)
    assert task.wait_deadline is not None
    with pytest.raises(InvalidTransition):
        services.signal_task(token, "completed", now=task.wait_deadline + timedelta(seconds=1))
    return task.pk, "task.timeout"


def path_heartbeat_after_deadline(team: Team, url: str | None) -> tuple[Any, str]:
    task, token = waiting(team, url, max_wait=60)
    assert task.wait_deadline is not None
    with pytest.raises(InvalidTransition):
        services.heartbeat(token, 60, now=task.wait_deadline + timedelta(seconds=1))
    return task.pk, "task.timeout"


TERMINAL_PATHS: list[Path] = [
    path_cancel_pending,
    path_cancel_delayed,
    path_cancel_waiting,
    path_success,
    path_fatal_failure,
    path_exhausted_retries,
    path_worker_lost,
    path_signal_completed,
    path_signal_failed,
    path_early_signal,
    path_expiry_sweep,
    path_signal_after_deadline,
    path_heartbeat_after_deadline,
]
PATH_IDS = [p.__name__.removeprefix("path_") for p in TERMINAL_PATHS]


@pytest.fixture
def finished() -> Iterator[list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    def record(sender: Any, **kwargs: Any) -> None:
        sent.append({"sender": sender, **kwargs})

    task_finished.connect(record)
    yield sent
    task_finished.disconnect(record)


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Record webhook wake-ups (queue, countdown) instead of sending them."""
    sent: list[tuple[str, float]] = []

    def record(message: Message) -> None:
        if message.task_name == "asyncqueue.run_due" and message.args[0] == "webhook":
            sent.append((message.queue, message.countdown))

    monkeypatch.setattr(engine, "publisher", record)
    return sent


def _settle_everything_later(task_id: Any) -> None:
    """Run every sweep far in the future: nothing may add a second event."""
    far = timezone.now() + timedelta(days=400)
    services.expire_overdue(now=far)
    services.recover_stale_leases(now=far)
    services.dispatch_due(now=far)
    services.redispatch_lost(now=far)


@pytest.mark.parametrize("path", TERMINAL_PATHS, ids=PATH_IDS)
def test_every_terminal_path_creates_exactly_one_event(
    team: Team,
    path: Path,
    django_capture_on_commit_callbacks: Any,
    finished: list[dict[str, Any]],
    no_broker: list[tuple[str, float]],
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        task_id, event = path(team, HOOK)
    assert events(task_id) == [event]
    delivery = WebhookDelivery.objects.get(task_id=task_id)
    assert (delivery.status, delivery.url, delivery.attempt_count) == ("pending", HOOK, 0)
    assert delivery.next_attempt_at is not None
    assert delivery.dispatched_at is not None
    # After commit: a worker is woken for the event and task_finished sent, once each.
    assert no_broker == [("default", 0)]
    task = Task.objects.get(pk=task_id)
    assert [(f["sender"], f["task_id"], f["status"]) for f in finished] == [
        (Task, task.pk, task.status)
    ]
    assert event == f"task.{task.status}"
    _settle_everything_later(task_id)
    assert events(task_id) == [event]


@pytest.mark.parametrize("path", TERMINAL_PATHS, ids=PATH_IDS)
def test_without_on_complete_url_no_event_but_the_signal_still_fires(
    team: Team,
    path: Path,
    django_capture_on_commit_callbacks: Any,
    finished: list[dict[str, Any]],
    no_broker: list[tuple[str, float]],
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        task_id, _ = path(team, None)
    assert events(task_id) == []
    assert no_broker == []
    assert [f["task_id"] for f in finished] == [task_id]


def test_non_terminal_transitions_create_no_event(team: Team) -> None:
    task = claimed(team, max_retries=2)
    services.finish_attempt(task, ok(503), worker="w1")  # → delayed
    task2, _ = waiting(team)  # → waiting
    assert WebhookDelivery.objects.count() == 0
    assert Task.objects.get(pk=task.pk).status == "delayed"
    assert task2.status == "waiting"


def test_the_event_is_not_committed_when_the_transition_rolls_back(team: Team) -> None:
    from django.db import transaction

    task = make(team).task

    def cancel_then_fail() -> None:
        with transaction.atomic():
            services.cancel_task(team, task.pk)
            assert events(task.pk) == ["task.cancelled"]
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        cancel_then_fail()
    assert events(task.pk) == []
    assert Task.objects.get(pk=task.pk).status == "pending"


def test_a_second_cancel_or_sweep_adds_no_event(team: Team) -> None:
    task = make(team).task
    services.cancel_task(team, task.pk)
    with pytest.raises(InvalidTransition):
        services.cancel_task(team, task.pk)
    assert events(task.pk) == ["task.cancelled"]


def test_each_cycle_after_a_retry_gets_its_own_event(team: Team) -> None:
    task = claimed(team, max_retries=0)
    services.finish_attempt(task, ok(500), worker="w1")
    services.retry_task(team, task.pk)
    again = services.claim_task(task.pk, "w1")
    assert again is not None
    services.finish_attempt(again, ok(), worker="w1")
    assert events(task.pk) == ["task.failed", "task.completed"]
    assert len(set(WebhookDelivery.objects.values_list("id", flat=True))) == 2


def test_bulk_expiry_creates_one_event_per_task_with_a_url(team: Team, no_broker: Any) -> None:
    with_url = [waiting(team, max_wait=60)[0] for _ in range(3)]
    without = waiting(team, url=None, max_wait=60)[0]
    later = max(t.wait_deadline for t in [*with_url, without]) + timedelta(seconds=1)  # type: ignore[type-var]
    assert services.expire_overdue(now=later) == 4
    for task in with_url:
        assert events(task.pk) == ["task.timeout"]
    assert events(without.pk) == []


@pytest.mark.django_db(transaction=True)
def test_signals_racing_the_expiry_sweep_make_one_event(
    team: Team, no_broker: list[tuple[str, float]]
) -> None:
    """Real threads: signals and sweeps after the deadline all try to time the task out."""
    task, token = waiting(team, max_wait=60)
    assert task.wait_deadline is not None
    after = task.wait_deadline + timedelta(seconds=1)
    barrier = threading.Barrier(6)

    def run(i: int) -> None:
        barrier.wait()
        try:
            if i % 2:
                services.expire_overdue(now=after)
            else:
                with contextlib.suppress(InvalidTransition):
                    services.signal_task(token, "completed", now=after)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Task.objects.get(pk=task.pk).status == "timeout"
    assert events(task.pk) == ["task.timeout"]
    assert len(no_broker) == 1


# ---------------------------------------------------------------- delivery state machine


@pytest.fixture
def delivery(team: Team) -> WebhookDelivery:
    path_success(team, HOOK)
    return WebhookDelivery.objects.get()


def claim(delivery: WebhookDelivery, worker: str = "w1", **kw: Any) -> WebhookDelivery:
    claimed = services.claim_webhook(delivery.pk, worker, **kw)
    assert claimed is not None
    return claimed


def test_claim_leases_the_event_with_its_task_and_team(
    delivery: WebhookDelivery, django_assert_num_queries: Any
) -> None:
    now = timezone.now()
    claimed = claim(delivery, now=now)
    assert (claimed.attempt_count, claimed.leased_by, claimed.claimed_at) == (1, "w1", now)
    assert claimed.lease_expires_at is not None
    assert claimed.lease_expires_at > now
    with django_assert_num_queries(0):
        assert claimed.task.team.webhook_secret


def test_duplicate_late_or_early_messages_are_no_ops(delivery: WebhookDelivery) -> None:
    early = timezone.now() - timedelta(minutes=1)
    assert services.claim_webhook(delivery.pk, "w1", now=early) is None  # not due yet
    d = claim(delivery)
    assert services.claim_webhook(delivery.pk, "w2") is None  # in flight
    services.finish_webhook_attempt(d, ok(), worker="w1", body="{}")
    assert services.claim_webhook(delivery.pk, "w3") is None  # delivered


def test_2xx_is_delivered(delivery: WebhookDelivery) -> None:
    now = timezone.now()
    d = claim(delivery, now=now)
    status = services.finish_webhook_attempt(d, ok(204), worker="w1", body='{"a":1}', now=now)
    d.refresh_from_db()
    assert status == d.status == "delivered"
    assert (d.delivered_at, d.next_attempt_at, d.lease_expires_at) == (now, None, None)
    assert (d.last_status_code, d.last_error, d.body) == (204, "", '{"a":1}')
    attempt = WebhookAttempt.objects.get(delivery=d)
    assert (attempt.number, attempt.status_code, attempt.duration_ms, attempt.error) == (
        1,
        204,
        7,
        "",
    )
    assert attempt.started_at == now - timedelta(milliseconds=7)


def test_410_gone_stops_retrying(delivery: WebhookDelivery) -> None:
    d = claim(delivery)
    assert services.finish_webhook_attempt(d, ok(410), worker="w1", body="{}") == "gone"
    d.refresh_from_db()
    assert (d.status, d.next_attempt_at, d.last_status_code) == ("gone", None, 410)


def test_a_blocked_address_fails_at_once(delivery: WebhookDelivery) -> None:
    d = claim(delivery)
    blocked = CallResult(error="blocked: connection to 10.0.0.1 refused", error_kind="blocked")
    assert services.finish_webhook_attempt(d, blocked, worker="w1", body="{}") == "failed"


@pytest.mark.parametrize(
    "failure",
    [
        ok(500),
        ok(404),
        ok(301),
        CallResult(error="connection refused", error_kind="connection"),
        CallResult(error="timeout after 10s", error_kind="timeout"),
    ],
    ids=["500", "404", "unfollowed-3xx", "refused", "timeout"],
)
def test_other_failures_follow_the_schedule_then_fail(
    delivery: WebhookDelivery, failure: CallResult
) -> None:
    """tests.settings: WEBHOOK_RETRY_SCHEDULE [0.2, 0.2, 0.2], no jitter → 4 attempts."""
    now = timezone.now()
    for number in (1, 2, 3):
        d = claim(delivery, now=now)
        status = services.finish_webhook_attempt(d, failure, worker="w1", body="{}", now=now)
        d.refresh_from_db()
        assert status == d.status == "pending"
        assert (d.retry_count, d.next_attempt_at) == (number, now + timedelta(seconds=0.2))
        assert d.last_error == failure.describe()
        now += timedelta(seconds=0.2)
    d = claim(delivery, now=now)
    assert services.finish_webhook_attempt(d, failure, worker="w1", body="{}", now=now) == "failed"
    d.refresh_from_db()
    assert (d.attempt_count, d.next_attempt_at) == (4, None)
    assert list(d.attempts.values_list("number", flat=True)) == [1, 2, 3, 4]


def test_the_delivery_never_changes_the_task(delivery: WebhookDelivery) -> None:
    before = Task.objects.filter(pk=delivery.task_id).values().get()
    d = claim(delivery)
    services.finish_webhook_attempt(d, ok(500), worker="w1", body="{}")
    d = claim(delivery, now=timezone.now() + timedelta(seconds=1))
    services.finish_webhook_attempt(d, ok(), worker="w1", body="{}")
    assert Task.objects.filter(pk=delivery.task_id).values().get() == before


def test_default_schedule_spans_about_a_day_with_jitter(delivery: WebhookDelivery) -> None:
    schedule = [5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200]
    with override_settings(ASYNCQUEUE={"WEBHOOK_RETRY_SCHEDULE": schedule}):
        now = timezone.now()
        for retry, seconds in enumerate(schedule, start=1):
            d = claim(delivery, now=now)
            services.finish_webhook_attempt(d, ok(503), worker="w1", body="{}", now=now)
            d.refresh_from_db()
            assert d.retry_count == retry
            assert d.next_attempt_at is not None
            delay = (d.next_attempt_at - now).total_seconds()
            assert seconds * 0.9 <= delay <= seconds * 1.1  # RETRY_JITTER 0.1 by default
            # Short waits ride a countdown; long ones are left to the due sweep.
            assert (d.dispatched_at is not None) == (delay <= 60)
            now = d.next_attempt_at
        d = claim(delivery, now=now)
        services.finish_webhook_attempt(d, ok(503), worker="w1", body="{}", now=now)
    assert WebhookDelivery.objects.get().status == "failed"
    assert sum(schedule) > 20 * 3600


def test_short_retries_ride_a_countdown(
    delivery: WebhookDelivery, django_capture_on_commit_callbacks: Any, no_broker: Any
) -> None:
    d = claim(delivery)
    with django_capture_on_commit_callbacks(execute=True):
        services.finish_webhook_attempt(d, ok(500), worker="w1", body="{}")
    # One wake-up with a countdown, on the grid of its slot: never early, at most 1/8 late.
    [(queue, countdown)] = no_broker
    assert queue == "default"
    assert 0.15 < countdown <= 0.2 + 0.2 / 8


def test_long_retries_wait_for_the_due_sweep(delivery: WebhookDelivery, no_broker: Any) -> None:
    now = timezone.now()
    with override_settings(ASYNCQUEUE={"WEBHOOK_RETRY_SCHEDULE": [600], "RETRY_JITTER": 0}):
        d = claim(delivery, now=now)
        services.finish_webhook_attempt(d, ok(500), worker="w1", body="{}", now=now)
    d.refresh_from_db()
    assert (d.dispatched_at, d.next_attempt_at) == (None, now + timedelta(seconds=600))
    assert services.dispatch_due_webhooks(now=now + timedelta(seconds=599)) == 0
    assert services.dispatch_due_webhooks(now=now + timedelta(seconds=601)) == 1
    assert services.dispatch_due_webhooks(now=now + timedelta(seconds=602)) == 0  # once
    d.refresh_from_db()
    assert d.dispatched_at == now + timedelta(seconds=601)


def test_a_lost_message_is_sent_again_after_the_grace_period(delivery: WebhookDelivery) -> None:
    sent = delivery.dispatched_at
    assert sent is not None
    assert services.redispatch_lost_webhooks(now=sent + timedelta(seconds=30)) == 0
    assert services.redispatch_lost_webhooks(now=sent + timedelta(seconds=61)) == 1
    assert services.redispatch_lost_webhooks(now=sent + timedelta(seconds=62)) == 0
    claim(delivery)  # in flight: never re-sent while leased
    assert services.redispatch_lost_webhooks(now=sent + timedelta(seconds=500)) == 0


def test_a_dead_workers_lease_is_recovered_and_retried(delivery: WebhookDelivery) -> None:
    d = claim(delivery, worker="dead")
    assert d.lease_expires_at is not None
    assert services.recover_stale_webhooks(now=d.lease_expires_at - timedelta(seconds=1)) == 0
    after = d.lease_expires_at + timedelta(seconds=1)
    assert services.recover_stale_webhooks(now=after) == 1
    assert services.recover_stale_webhooks(now=after) == 0  # once
    d.refresh_from_db()
    assert (d.status, d.retry_count, d.lease_expires_at, d.leased_by) == ("pending", 1, None, "")
    attempt = WebhookAttempt.objects.get(delivery=d)
    assert (attempt.number, attempt.worker, attempt.error) == (
        1,
        "dead",
        "worker lost (lease expired)",
    )
    # The dead worker's late report is discarded; the next claim works as usual.
    assert services.finish_webhook_attempt(d, ok(), worker="dead", body="{}") is None
    again = claim(delivery, worker="w2", now=after + timedelta(seconds=1))
    assert again.attempt_count == 2


def test_resend_starts_a_new_cycle_with_the_same_event(delivery: WebhookDelivery) -> None:
    now = timezone.now()
    d = claim(delivery, now=now)
    services.finish_webhook_attempt(d, ok(), worker="w1", body='{"same":true}', now=now)
    later = now + timedelta(hours=1)
    again = services.resend_webhook(d, now=later)
    assert again.pk == delivery.pk
    assert (again.status, again.retry_count, again.next_attempt_at) == ("pending", 0, later)
    assert (again.delivered_at, again.body, again.attempt_count) == (None, '{"same":true}', 1)
    second = claim(delivery, now=later)
    assert second.attempt_count == 2
    assert outbound.render_webhook(second) == '{"same":true}'  # the same bytes as the first time


def test_resend_refuses_an_event_in_flight(delivery: WebhookDelivery) -> None:
    claim(delivery)
    with pytest.raises(WebhookInFlight):
        services.resend_webhook(delivery)


def test_resend_latest_webhook_of_a_task(team: Team) -> None:
    task = make(team).task
    with pytest.raises(WebhookNotFound):
        services.resend_latest_webhook(team, task.pk)
    services.cancel_task(team, task.pk)
    assert services.resend_latest_webhook(team, task.pk).event == "task.cancelled"
    other = services.get_or_create_team("other")[0]
    with pytest.raises(services.TaskNotFound):
        services.resend_latest_webhook(other, task.pk)


# ---------------------------------------------------------------- the request we send


def test_webhook_body_is_the_event_and_the_api_task(delivery: WebhookDelivery, team: Team) -> None:
    from asyncqueue_django.api.serializers import TaskSerializer

    d = claim(delivery)
    body = outbound.render_webhook(d)
    task = Task.objects.get(pk=d.task_id)
    assert json.loads(body) == {
        "event": "task.completed",
        "task": json.loads(json.dumps(TaskSerializer(task).data)),
    }
    headers = outbound.build_webhook(d, body)
    assert headers["Content-Type"] == "application/json"
    assert headers["webhook-id"] == str(d.pk)
    assert headers["X-AsyncQueue-Event"] == "task.completed"
    assert headers["X-AsyncQueue-Task-Id"] == str(task.pk)
    # Official Standard Webhooks verification, and ours on the AsyncQueue header alone.
    assert Webhook(team.webhook_secret).verify(body.encode(), headers)["event"] == "task.completed"
    legacy = {"X-AsyncQueue-Signature": headers["X-AsyncQueue-Signature"]}
    signing.verify(body.encode(), legacy, [team.webhook_secret])


# ---------------------------------------------------------------- secrets


def test_rotation_keeps_the_previous_secret_signing_during_the_overlap(team: Team) -> None:
    old = team.webhook_secret
    now = timezone.now()
    new = services.rotate_webhook_secret(team, now=now)
    assert new != old
    assert new.startswith("whsec_")
    assert team.webhook_secret == new
    assert team.previous_secret_expires_at == now + timedelta(days=1)
    assert team.signing_secrets(now) == [new, old]
    assert team.signing_secrets(now + timedelta(hours=23)) == [new, old]
    assert team.signing_secrets(now + timedelta(days=1)) == [new]


def test_a_second_rotation_retires_the_oldest_secret(team: Team) -> None:
    first = team.webhook_secret
    second = services.rotate_webhook_secret(team)
    third = services.rotate_webhook_secret(team)
    assert team.signing_secrets(timezone.now()) == [third, second]
    assert first not in team.signing_secrets(timezone.now())


def test_no_overlap_retires_the_old_secret_at_once(team: Team) -> None:
    with override_settings(ASYNCQUEUE={"WEBHOOK_SECRET_OVERLAP": 0}):
        new = services.rotate_webhook_secret(team)
    assert team.signing_secrets(timezone.now()) == [new]
    assert (team.previous_webhook_secret, team.previous_secret_expires_at) == ("", None)


def test_callbacks_are_signed_with_both_secrets_during_the_overlap(team: Team) -> None:
    old = team.webhook_secret
    new = services.rotate_webhook_secret(team)
    task = claimed(team)
    headers, body = outbound.build_callback(task)
    assert len(headers["webhook-signature"].split()) == 2
    Webhook(new).verify(body or b"", headers, json_parse=False)
    Webhook(old).verify(body or b"", headers, json_parse=False)


def test_secrets_are_not_logged(
    team: Team, caplog: pytest.LogCaptureFixture, delivery: WebhookDelivery
) -> None:
    caplog.set_level("DEBUG", logger="asyncqueue_django")
    new = services.rotate_webhook_secret(team)
    d = claim(delivery)
    outbound.build_webhook(d, outbound.render_webhook(d))
    assert new not in caplog.text
    assert team.previous_webhook_secret not in caplog.text


# ---------------------------------------------------------------- API and admin


def test_get_task_lists_its_deliveries(client: APIClient, team: Team) -> None:
    task_id, _ = path_success(team, HOOK)
    d = WebhookDelivery.objects.get()
    now = timezone.now()
    c = claim(d, now=now)
    services.finish_webhook_attempt(c, ok(502), worker="w1", body="{}", now=now)
    body = client.get(f"/v1/tasks/{task_id}").json()["task"]
    assert body["webhookDeliveries"] == [
        {
            "id": str(d.pk),
            "event": "task.completed",
            "status": "pending",
            "attempts": 1,
            "lastStatusCode": 502,
            "lastError": "HTTP 502",
            "createdAt": body["webhookDeliveries"][0]["createdAt"],
            "deliveredAt": None,
            "nextAttemptAt": (now + timedelta(seconds=0.2)).isoformat().replace("+00:00", "Z"),
        }
    ]


def test_get_task_has_no_n_plus_one(
    client: APIClient, team: Team, django_assert_max_num_queries: Any
) -> None:
    task = claimed(team, max_retries=0)
    services.finish_attempt(task, ok(500), worker="w1")
    for _ in range(3):  # three cycles, three events
        services.retry_task(team, task.pk)
        again = services.claim_task(task.pk, "w1")
        assert again is not None
        services.finish_attempt(again, ok(500), worker="w1")
    assert WebhookDelivery.objects.filter(task=task).count() == 4
    client.get(f"/v1/tasks/{task.pk}")  # warm up (authentication touches the key once)
    with django_assert_max_num_queries(4):  # key + task + attempts + deliveries
        response = client.get(f"/v1/tasks/{task.pk}")
    assert len(response.json()["task"]["webhookDeliveries"]) == 4


def test_admin_shows_deliveries_and_resends_the_latest(
    admin_client: Any, team: Team, no_broker: Any
) -> None:
    task_id, _ = path_success(team, HOOK)
    d = WebhookDelivery.objects.get()
    c = claim(d)
    services.finish_webhook_attempt(c, ok(), worker="w1", body="{}")
    page = admin_client.get(f"/admin/asyncqueue/task/{task_id}/change/")
    assert page.status_code == 200
    assert str(d.pk) in page.content.decode()
    response = admin_client.post(
        "/admin/asyncqueue/task/",
        {"action": "resend_webhooks", "_selected_action": [str(task_id)]},
        follow=True,
    )
    assert "Re-sent the webhook of 1 task(s)." in response.content.decode()
    d.refresh_from_db()
    assert (d.status, d.attempt_count) == ("pending", 1)
    plain = make(team, url=None).task
    response = admin_client.post(
        "/admin/asyncqueue/task/",
        {"action": "resend_webhooks", "_selected_action": [str(plain.pk)]},
        follow=True,
    )
    assert "Task has no webhook event" in response.content.decode()
