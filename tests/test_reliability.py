"""Faults and races: nothing accepted is lost, and every task ends exactly once.

These tests inject real faults — a worker SIGKILLed mid-callback, the broker stopped while
tasks are created, the worker's database connections cut — and real races between threads on
the real database. Each ends with the same proof: every task terminal, exactly one terminal
event (webhook delivery row) per task, attempt history consistent.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.db.models import Count
from django.test import override_settings
from django.utils import timezone
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient
from werkzeug import Request, Response

from asyncqueue_django import services, tasks
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import Attempt, Task, Team, WebhookDelivery
from asyncqueue_django.services import TaskSpec
from asyncqueue_django.states import TERMINAL
from tests.worker import Worker, publishing_to, wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row-lock races and backend kills need PostgreSQL"
)

FAST_RECOVERY: dict[str, Any] = {
    "ALLOW_PRIVATE_TARGETS": True,
    "RETRY_BASE_DELAY": 0.1,
    "RETRY_JITTER": 0,
    "LEASE_MARGIN": 1,
    "CONNECT_TIMEOUT": 1,
    "DISPATCH_GRACE": 2,
    "WEBHOOK_RETRY_SCHEDULE": [0.2, 0.2, 0.2, 0.5, 1, 1, 2, 2],
}


def fast_recovery(queue: str) -> dict[str, Any]:
    """Short leases and grace periods, and webhooks on the test's own queue, so that only the
    workers this test starts (and kills) consume its messages."""
    return {**FAST_RECOVERY, "WEBHOOK_QUEUE": queue}


@pytest.fixture
def slow_target() -> Iterator[HTTPServer]:
    """A threaded local target: answers 200 after a short pause, many calls at once."""
    server = HTTPServer(threaded=True)
    server.start()

    def handler(request: Request) -> Response:
        time.sleep(0.15)
        return Response('{"ok": true}', status=200, content_type="application/json")

    server.expect_request("/slow").respond_with_handler(handler)
    server.expect_request("/hook").respond_with_data("ok")
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def _slow_tasks(team: Team, target: HTTPServer, *, queue: str, count: int) -> list[str]:
    """``count`` tasks against the slow target on ``queue``, each with an onComplete URL."""
    spec = TaskSpec(
        target_url=target.url_for("/slow"),
        queue=queue,
        timeout=2,
        max_retries=8,
        on_complete_url=target.url_for("/hook"),
    )
    return [str(services.create_task(team, spec).task.pk) for _ in range(count)]


def _sweep_until_all_terminal(ids: list[str], timeout: float, queue: str) -> None:
    """Play beat: run the recovery and due sweeps until every task is terminal and every
    terminal event has been delivered (or given up on)."""
    terminal = [str(s) for s in TERMINAL]
    deadline = time.monotonic() + timeout
    swept: Counter[str] = Counter()
    with override_settings(ASYNCQUEUE=fast_recovery(queue)):
        while time.monotonic() < deadline:
            swept["stale_leases"] += services.recover_stale_leases()
            swept["redispatched"] += services.redispatch_lost()
            swept["due"] += services.dispatch_due()
            swept["stale_webhooks"] += services.recover_stale_webhooks()
            swept["redispatched_webhooks"] += services.redispatch_lost_webhooks()
            swept["due_webhooks"] += services.dispatch_due_webhooks()
            left = Task.objects.filter(pk__in=ids).exclude(status__in=terminal).count()
            undelivered = (
                WebhookDelivery.objects.filter(task_id__in=ids)
                .exclude(status__in=["delivered", "gone", "failed"])
                .count()
            )
            if left == 0 and undelivered == 0:
                return
            time.sleep(0.5)
    stuck = list(
        Task.objects.filter(pk__in=ids).exclude(status__in=terminal).values("pk", "status")[:10]
    )
    pytest.fail(f"tasks not terminal after {timeout}s (sweeps: {dict(swept)}): {stuck}")


def assert_exactly_once(ids: list[str]) -> None:
    """Every task terminal; exactly one terminal event each; attempts numbered 1..n."""
    rows = Task.objects.filter(pk__in=ids)
    assert rows.count() == len(ids), "a task row is missing"
    statuses = Counter(rows.values_list("status", flat=True))
    assert set(statuses) <= {str(s) for s in TERMINAL}, statuses
    events = dict(
        WebhookDelivery.objects.filter(task_id__in=ids)
        .values("task_id")
        .annotate(n=Count("id"))
        .values_list("task_id", "n")
    )
    assert len(events) == len(ids), "a terminal task has no event"
    assert set(events.values()) == {1}, "a task has more than one terminal event"
    for task in rows.prefetch_related("attempts"):
        numbers = [a.number for a in task.attempts.all()]
        assert numbers == list(range(1, len(numbers) + 1)), (task.pk, numbers)
        succeeded = [a for a in task.attempts.all() if a.outcome == "succeeded"]
        assert len(succeeded) <= 1, task.pk
        if task.status == "completed":
            assert len(succeeded) == 1, task.pk


# --------------------------------------------------------------------------------------------
# Worker crash
# --------------------------------------------------------------------------------------------


@pytest.mark.worker
@on_postgres
def test_worker_sigkilled_mid_callback_loses_nothing(
    team: Team, slow_target: HTTPServer, worker_factory: Callable[..., Worker]
) -> None:
    import json

    # Batches of 2 on 4 threads: 8 calls in flight, so the 500 last through all four kills
    # (with the defaults a worker runs 128 at once and is done between two kills).
    overrides = {**fast_recovery("crash"), "BATCH_SIZE": 2}
    env = {"ASYNCQUEUE_TEST_OVERRIDES": json.dumps(overrides)}
    worker = worker_factory(queues="crash", beat=False, concurrency=4, **env)
    ids = _slow_tasks(team, slow_target, queue="crash", count=500)
    kills = 0
    for _ in range(4):
        # Kill only while callbacks are in flight.
        wait_for(lambda: Task.objects.filter(pk__in=ids, status="processing").exists(), 60)
        worker.kill()
        kills += 1
        worker = worker_factory(queues="crash", beat=False, concurrency=4, **env)
        time.sleep(1.0)
    _sweep_until_all_terminal(ids, timeout=240, queue="crash")
    worker.stop()

    assert kills == 4
    assert_exactly_once(ids)
    assert Counter(Task.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        "completed": 500
    }
    lost = Attempt.objects.filter(task_id__in=ids, outcome="worker_lost").count()
    assert lost >= 1, "no attempt was caught mid-flight by the kills"
    assert WebhookDelivery.objects.filter(task_id__in=ids, status="delivered").count() == 500


# --------------------------------------------------------------------------------------------
# The batch path: a worker killed with a whole batch in flight, duplicate and lost wake-ups
# --------------------------------------------------------------------------------------------


class CountingTarget:
    """A threaded local target that counts the calls of each task (``/call``) and the webhook
    events of each task (``/hook``). While ``hang`` is set, the first call of each task hangs
    (as a target that never answers, until the test ends); every other call answers 200."""

    def __init__(self, hang: bool = False) -> None:
        self.calls: Counter[str] = Counter()
        self.hooks: Counter[str] = Counter()
        self.hang = hang
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.server = HTTPServer(threaded=True)
        self.server.expect_request("/call").respond_with_handler(self._call)
        self.server.expect_request("/hook").respond_with_handler(self._hook)
        self.server.start()

    def _call(self, request: Request) -> Response:
        task_id = request.headers.get("X-AsyncQueue-Task-Id", "")
        with self._lock:
            self.calls[task_id] += 1
            first = self.calls[task_id] == 1
        if self.hang and first:
            self.release.wait(60)
        return Response('{"ok": true}', status=200, content_type="application/json")

    def _hook(self, request: Request) -> Response:
        with self._lock:
            self.hooks[request.headers.get("X-AsyncQueue-Task-Id", "")] += 1
        return Response("ok")

    def tasks(self, team: Team, queue: str, count: int, timeout: int = 30) -> list[str]:
        """``count`` tasks against this target on ``queue``, created in one transaction (so
        one wake-up stands for all of them), each with an onComplete URL."""
        spec = TaskSpec(
            target_url=self.server.url_for("/call"),
            queue=queue,
            timeout=timeout,
            max_retries=3,
            on_complete_url=self.server.url_for("/hook"),
        )
        with transaction.atomic():
            return [str(services.create_task(team, spec).task.pk) for _ in range(count)]

    def close(self) -> None:
        self.release.set()
        self.server.clear()
        if self.server.is_running():
            self.server.stop()


@pytest.fixture
def counting_target() -> Iterator[CountingTarget]:
    target = CountingTarget()
    yield target
    target.close()


@pytest.mark.worker
def test_a_worker_killed_with_a_full_batch_in_flight_loses_nothing(
    team: Team, worker_factory: Callable[..., Worker]
) -> None:
    """One wake-up claims a full batch of 16; every call hangs; the worker is SIGKILLed. After
    the leases expire, the recovery sweep records each lost attempt and retries it: every task
    is completed, each target was called exactly twice (the lost attempt and the one after it:
    a target is called again only for an attempt whose worker was lost), and each task made
    one terminal transition with one webhook event, delivered once."""
    import json

    target = CountingTarget(hang=True)
    queue = "batchkill"
    env = {"ASYNCQUEUE_TEST_OVERRIDES": json.dumps({**fast_recovery(queue), "BATCH_SIZE": 16})}
    worker = worker_factory(queues=queue, beat=False, concurrency=1, **env)
    try:
        ids = target.tasks(team, queue, 16, timeout=5)  # lease: 5 + 1 + 1 s
        wait_for(lambda: len(target.calls) == 16, 60)  # the whole batch is in flight
        held = Task.objects.filter(pk__in=ids, status="processing")
        assert held.count() == 16
        assert len(set(held.values_list("leased_by", flat=True))) == 1  # one worker holds all
        worker.kill()
        assert target.calls == dict.fromkeys(ids, 1)
        worker = worker_factory(queues=queue, beat=False, concurrency=1, **env)
        _sweep_until_all_terminal(ids, timeout=120, queue=queue)
        wait_for(lambda: sum(target.hooks.values()) >= 16, 30)
    finally:
        worker.stop()
        target.close()
    assert_exactly_once(ids)
    assert Counter(Task.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        "completed": 16
    }
    assert target.calls == dict.fromkeys(ids, 2)
    for task_id in ids:
        outcomes = list(
            Attempt.objects.filter(task_id=task_id)
            .order_by("number")
            .values_list("outcome", flat=True)
        )
        assert outcomes == ["worker_lost", "succeeded"], (task_id, outcomes)
    assert target.hooks == dict.fromkeys(ids, 1)
    assert WebhookDelivery.objects.filter(task_id__in=ids, status="delivered").count() == 16


def test_duplicate_wake_ups_are_no_ops(team: Team, counting_target: CountingTarget) -> None:
    """Eight copies of a wake-up for 16 due tasks, run at once: each task is called once, and
    so is each webhook receiver; copies that come later claim nothing."""
    queue = "unconsumed-dupwake"
    hooks = "unconsumed-dupwake-hooks"  # no worker takes these events: the test runs them
    with override_settings(ASYNCQUEUE={**FAST_RECOVERY, "WEBHOOK_QUEUE": hooks}):
        ids = counting_target.tasks(team, queue, 16)
        ran = _in_threads(8, lambda i: tasks.run_due.run("task", queue), workers=8)
        assert sum(ran) == 16
        assert counting_target.calls == dict.fromkeys(ids, 1)
        # A webhook wake-up claims due events whatever their queue (there is one webhook
        # queue): events other tests of the session left due may be run with ours.
        hooked = _in_threads(8, lambda i: tasks.run_due.run("webhook", hooks), workers=8)
        assert sum(hooked) >= 16
        assert counting_target.hooks == dict.fromkeys(ids, 1)
        assert _in_threads(4, lambda i: tasks.run_due.run("task", queue), workers=4) == [0] * 4
        _in_threads(4, lambda i: tasks.run_due.run("webhook", hooks), workers=4)
        assert counting_target.hooks == dict.fromkeys(ids, 1)
    assert_exactly_once(ids)
    assert Task.objects.filter(pk__in=ids, status="completed").count() == 16
    assert WebhookDelivery.objects.filter(task_id__in=ids, status="delivered").count() == 16


@pytest.mark.worker
def test_lost_wake_ups_are_covered_by_the_sweep(
    team: Team,
    counting_target: CountingTarget,
    worker_factory: Callable[..., Worker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The publisher drops every message while tasks are created and others cancelled (their
    webhook events made due): nothing runs. The sweeps, after ``DISPATCH_GRACE``, wake the
    queues again: every task runs once and every event is delivered once."""
    import json

    from asyncqueue_django.services import engine

    queue = "lostwake"
    env = {"ASYNCQUEUE_TEST_OVERRIDES": json.dumps(fast_recovery(queue))}
    worker = worker_factory(queues=queue, beat=False, **env)
    dropped: list[str] = []
    try:
        with monkeypatch.context() as patch:
            patch.setattr(engine, "publisher", lambda message: dropped.append(message.task_name))
            ids = counting_target.tasks(team, queue, 20)
            for task_id in ids[:5]:  # cancelled before they run: their events are due now
                services.cancel_task(team, task_id)
            engine.wakeups.flush()
        assert set(dropped) == {"asyncqueue.run_due"}
        time.sleep(1.0)
        assert counting_target.calls == {}  # the worker was never woken
        _sweep_until_all_terminal(ids, timeout=120, queue=queue)
    finally:
        worker.stop()
    assert_exactly_once(ids)
    assert Counter(Task.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        "completed": 15,
        "cancelled": 5,
    }
    assert counting_target.calls == dict.fromkeys(ids[5:], 1)
    assert counting_target.hooks == dict.fromkeys(ids, 1)


# --------------------------------------------------------------------------------------------
# Broker outage
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    def __init__(self, port: int, workdir: str) -> None:
        self.port, self.workdir = port, workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.mark.worker
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_tasks_created_while_the_broker_is_down_all_run_after_it_returns(
    client: APIClient,
    slow_target: HTTPServer,
    worker_factory: Callable[..., Worker],
    tmp_path: Any,
) -> None:
    import json

    port = _free_port()
    redis = PrivateRedis(port, str(tmp_path))
    url = f"redis://127.0.0.1:{port}/0"
    redis.start()
    env = {
        "CELERY_BROKER_URL": url,
        "ASYNCQUEUE_TEST_OVERRIDES": json.dumps(fast_recovery("outage")),
    }
    worker = worker_factory(queues="outage", beat=False, **env)
    try:
        with publishing_to(url):
            redis.stop()  # the broker goes away while clients keep creating tasks
            responses = [
                client.post(
                    "/v1/tasks",
                    {
                        "targetUrl": slow_target.url_for("/hook"),
                        "queue": "outage",
                        "onCompleteUrl": slow_target.url_for("/hook"),
                    },
                    format="json",
                )
                for _ in range(200)
            ]
            assert [r.status_code for r in responses] == [201] * 200
            ids = [r.json()["task"]["id"] for r in responses]
            assert Task.objects.filter(pk__in=ids, status="pending").count() == 200
            redis.start()  # it comes back; the recovery sweep re-sends what was never queued
            _sweep_until_all_terminal(ids, timeout=180, queue="outage")
    finally:
        worker.stop()
        redis.stop()
    assert_exactly_once(ids)
    assert Task.objects.filter(pk__in=ids, status="completed").count() == 200


# --------------------------------------------------------------------------------------------
# Database hiccup
# --------------------------------------------------------------------------------------------


@pytest.mark.worker
@on_postgres
def test_worker_losing_its_database_connections_recovers(
    team: Team, slow_target: HTTPServer, worker_factory: Callable[..., Worker]
) -> None:
    import json

    # Batches of 2 on 2 threads: 4 calls in flight, so the work lasts through three cuts
    # (with the defaults a 4-thread worker runs all 60 at once, in a fraction of a second).
    overrides = {**fast_recovery("hiccup"), "BATCH_SIZE": 2}
    env = {"ASYNCQUEUE_TEST_OVERRIDES": json.dumps(overrides)}
    worker = worker_factory(queues="hiccup", beat=False, concurrency=2, **env)
    ids = _slow_tasks(team, slow_target, queue="hiccup", count=60)
    db_name = connection.settings_dict["NAME"]
    for _ in range(3):
        wait_for(lambda: Task.objects.filter(pk__in=ids, status="processing").exists(), 60)
        with connection.cursor() as cursor:  # cut every other session on the test database
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [db_name],
            )
        time.sleep(0.5)
    _sweep_until_all_terminal(ids, timeout=180, queue="hiccup")
    worker.stop()
    assert_exactly_once(ids)
    assert Task.objects.filter(pk__in=ids, status="completed").count() == 60


# --------------------------------------------------------------------------------------------
# Races
# --------------------------------------------------------------------------------------------


def _in_threads(n: int, fn: Callable[[int], Any], workers: int = 20) -> list[Any]:
    barrier = threading.Barrier(min(n, workers))

    def run(i: int) -> Any:
        if i < workers:
            barrier.wait()
        try:
            return fn(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, range(n)))


def _waiting(team: Team, **spec: Any) -> tuple[Task, str]:
    created = services.create_task(
        team,
        TaskSpec(
            target_url="http://127.0.0.1:9/",
            wait_for_signal=True,
            queue="unconsumed",
            on_complete_url="http://127.0.0.1:9/hook",
            **spec,
        ),
    )
    task = services.claim_task(created.task.pk, "w")
    assert task is not None
    services.finish_attempt(task, CallResult(status_code=200), worker="w")
    assert created.signal_token
    return created.task, created.signal_token


def test_100_concurrent_signals_on_one_token_have_one_winner(team: Team) -> None:
    task, token = _waiting(team)
    anon = APIClient

    def send(i: int) -> int:
        return int(
            anon()
            .post(
                f"/v1/signals/{token}", {"status": "completed", "result": {"n": i}}, format="json"
            )
            .status_code
        )

    with override_settings(ASYNCQUEUE={"SIGNAL_RATE_LIMIT": None}):
        codes = _in_threads(100, send)
    assert Counter(codes) == {200: 1, 409: 99}
    assert WebhookDelivery.objects.filter(task=task).count() == 1


def test_signals_racing_the_expiry_sweep_end_each_task_once(team: Team) -> None:
    pairs = [_waiting(team) for _ in range(200)]
    now = timezone.now()
    Task.objects.filter(pk__in=[t.pk for t, _ in pairs]).update(wait_deadline=now)

    def act(i: int) -> Any:
        if i % 5 == 0:
            return services.expire_overdue()
        _, token = pairs[i % len(pairs)]
        try:
            return services.signal_task(token, "completed", now=now - timedelta(seconds=1))
        except Exception as exc:  # InvalidTransition: the sweep won
            return type(exc).__name__

    _in_threads(250, act)
    services.expire_overdue()
    ids = [str(t.pk) for t, _ in pairs]
    assert_exactly_once(ids)


def test_cancel_racing_claims_has_one_winner(team: Team) -> None:
    created = [
        services.create_task(
            team,
            TaskSpec(
                target_url="http://127.0.0.1:9/",
                queue="unconsumed",
                on_complete_url="http://127.0.0.1:9/hook",
            ),
        ).task
        for _ in range(50)
    ]

    def act(i: int) -> str:
        task = created[i // 2]
        if i % 2:
            try:
                services.cancel_task(team, task.pk)
                return "cancelled"
            except Exception:
                return "cancel-refused"
        return "claimed" if services.claim_task(task.pk, f"w{i}") else "claim-refused"

    results = _in_threads(100, act)
    for n, task in enumerate(created):
        pair = sorted(results[2 * n : 2 * n + 2])
        assert pair in (["cancel-refused", "claimed"], ["cancelled", "claim-refused"]), pair
        task.refresh_from_db()
        assert task.status == ("cancelled" if "cancelled" in pair else "processing")
    assert WebhookDelivery.objects.filter(task__in=created).count() == results.count("cancelled")


def test_two_recovery_sweeps_at_once_recover_each_task_once(team: Team) -> None:
    ids = []
    for _ in range(60):
        task = services.create_task(
            team,
            TaskSpec(
                target_url="http://127.0.0.1:9/",
                queue="unconsumed",
                max_retries=0,
                on_complete_url="http://127.0.0.1:9/hook",
            ),
        ).task
        services.claim_task(task.pk, "dead")
        ids.append(str(task.pk))
    later = timezone.now() + timedelta(hours=1)
    counts = _in_threads(2, lambda i: services.recover_stale_leases(now=later), workers=2)
    assert sum(counts) == 60
    assert Attempt.objects.filter(task_id__in=ids, outcome="worker_lost").count() == 60
    assert_exactly_once(ids)


def test_duplicate_messages_execute_once(team: Team, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/dup").respond_with_data("ok")
    task = services.create_task(
        team,
        TaskSpec(
            target_url=httpserver.url_for("/dup"),
            queue="unconsumed",
            on_complete_url="http://127.0.0.1:9/hook",
        ),
    ).task
    results = _in_threads(8, lambda i: tasks.execute_task.run(str(task.pk)), workers=8)
    assert Counter(map(str, results)) == {"None": 7, "completed": 1}
    assert len(httpserver.log) == 1
    assert_exactly_once([str(task.pk)])
