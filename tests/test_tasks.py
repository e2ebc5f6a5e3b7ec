"""Celery wiring: the callback request, and priority ordering on Redis and RabbitMQ."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from celery import Celery
from kombu import Queue

from asyncqueue_django import broker, outbound, services, signing
from asyncqueue_django.models import Team
from asyncqueue_django.services import TaskSpec
from asyncqueue_django.values import Message
from tests.worker import wait_for


@pytest.mark.parametrize(
    ("driver", "expected"),
    [("redis", {1: 9, 5: 5, 10: 0}), ("amqp", {1: 1, 5: 5, 10: 10}), ("sqlalchemy", None)],
)
def test_priority_mapping(driver: str, expected: dict[int, int] | None) -> None:
    for priority in (1, 5, 10):
        mapped = broker.broker_priority(priority, driver)
        assert mapped == (None if expected is None else expected[priority])


def send_execute(task_id: str, queue: str, priority: int) -> None:
    broker.publish(Message("asyncqueue.execute_task", (task_id,), queue, priority))


@pytest.mark.parametrize("kind", ["execute", "webhook"])
def test_every_kind_of_message_is_published_with_the_one_bounded_retry(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker outage holds a create, a cancel or a signal (which publishes its webhook event)
    for the same short, bounded time: one quick retry, then the recovery sweep's turn."""
    seen: list[dict[str, object]] = []

    def spy(self: object, name: str, args: object = None, **options: object) -> None:
        seen.append({"name": name, **options})

    monkeypatch.setattr("celery.Celery.send_task", spy)
    if kind == "execute":
        assert services.enqueue("t-1", "default", 5)
    else:
        assert services.enqueue_webhook("d-1")
    assert [o["retry_policy"] for o in seen] == [broker.PUBLISH_RETRY]
    assert broker.PUBLISH_RETRY["max_retries"] == 1


def test_callback_request_for_payload_body_and_get(team: Team) -> None:
    task = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", payload={"ü": [1, 2]}, headers={"A": "b"})
    ).task
    task.attempt_count = 2
    headers, body = outbound.build_callback(task)
    assert json.loads(body or b"") == {"ü": [1, 2]}
    signature_headers = {
        "X-AsyncQueue-Signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
    assert {k: v for k, v in headers.items() if k not in signature_headers} == {
        "A": "b",
        "Content-Type": "application/json",
        "X-AsyncQueue-Task-Id": str(task.pk),
        "X-AsyncQueue-Attempt": "2",
    }
    # Signed with the team's secret over the exact body; the id names task and attempt.
    assert headers["webhook-id"] == f"{task.pk}-2"
    signing.verify(body or b"", headers, [team.webhook_secret])
    task.payload, task.body = None, "raw text"
    headers, body = outbound.build_callback(task)
    assert body == b"raw text"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    task.headers = {"content-type": "application/xml"}
    headers, _ = outbound.build_callback(task)
    assert "Content-Type" not in headers
    assert headers["content-type"] == "application/xml"
    task.method = "GET"
    headers, body = outbound.build_callback(task)
    assert body is None
    signing.verify(b"", headers, [team.webhook_secret])  # an empty body is signed as ""


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


BROKERS = {
    "redis": ("redis://127.0.0.1:6379/14", 6379),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
}


@pytest.fixture(params=sorted(BROKERS))
def broker_app(request: pytest.FixtureRequest) -> Iterator[Celery]:
    url, port = BROKERS[request.param]
    if not _answers("127.0.0.1", port):
        pytest.fail(f"{request.param} is not running on 127.0.0.1:{port} (CI starts it)")
    app = Celery(f"priority-{request.param}", broker=url, set_as_current=False)
    app.conf.task_queue_max_priority = 10
    app.conf.broker_transport_options = {
        "priority_steps": list(range(10)),
        "queue_order_strategy": "priority",
    }
    previous = broker.current_app._get_current_object()
    app.set_current()
    broker._driver_type.cache_clear()
    try:
        yield app
    finally:
        previous.set_current()
        broker._driver_type.cache_clear()


def test_priority_10_is_served_before_1(broker_app: Celery) -> None:
    """Publish low, then high priority into a fresh queue; the broker hands out high first."""
    queue_name = f"prio-{uuid.uuid4().hex[:8]}"
    queue = Queue(queue_name, queue_arguments={"x-max-priority": 10})
    with broker_app.connection_for_write() as conn:
        queue(conn.default_channel).declare()
    try:
        send_execute("low-1", queue_name, 1)
        send_execute("low-2", queue_name, 1)
        send_execute("high", queue_name, 10)
        send_execute("mid", queue_name, 5)
        order = []
        with broker_app.connection_for_read() as conn:
            simple = conn.SimpleQueue(queue, no_ack=True)
            for _ in range(4):
                message = simple.get(timeout=5)
                order.append(message.payload[0][0])
            simple.close()
        assert order == ["high", "mid", "low-1", "low-2"]
    finally:
        with broker_app.connection_for_write() as conn:
            queue(conn.default_channel).delete()


class _SlowAndFast(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/slow":
            time.sleep(2)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.django_db(transaction=True)
def test_a_wake_up_runs_its_batch_at_once_and_a_slow_target_holds_no_other_back(
    team: Team,
) -> None:
    from django.db import connection

    from asyncqueue_django import tasks
    from asyncqueue_django.models import Attempt, Task

    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowAndFast)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    queue = "unconsumed-batch"  # no test worker consumes it: the wake-up runs here
    slow = services.create_task(team, TaskSpec(target_url=f"{base}/slow", queue=queue)).task
    fast = [
        services.create_task(team, TaskSpec(target_url=f"{base}/fast", queue=queue)).task
        for _ in range(3)
    ]
    ran: list[int] = []

    def wake() -> None:
        try:
            ran.append(tasks.run_due.run("task", queue))
        finally:
            connection.close()

    started = time.monotonic()
    thread = threading.Thread(target=wake)
    thread.start()
    try:
        wait_for(
            lambda: (
                Task.objects.filter(pk__in=[t.pk for t in fast], status="completed").count() == 3
            ),
            10,
        )
        assert time.monotonic() - started < 2  # recorded while the slow call still runs
        assert Task.objects.get(pk=slow.pk).status == "processing"
    finally:
        thread.join(30)
        server.shutdown()
        server.server_close()
    assert ran == [4]
    assert Task.objects.get(pk=slow.pk).status == "completed"
    assert Attempt.objects.filter(task__queue=queue).count() == 4
    assert tasks.run_due.run("task", queue) == 0  # a duplicate wake-up is a no-op


@pytest.mark.django_db(transaction=True)
def test_an_old_per_task_message_still_runs_its_task(team: Team, httpserver: Any) -> None:
    from asyncqueue_django import tasks

    httpserver.expect_request("/old").respond_with_data("ok")
    task = services.create_task(
        team, TaskSpec(target_url=httpserver.url_for("/old"), queue="unconsumed")
    ).task
    assert tasks.execute_task.run(str(task.pk)) == "completed"
    assert tasks.execute_task.run(str(task.pk)) is None
