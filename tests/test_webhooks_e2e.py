"""End to end: API → a real Celery worker (with embedded beat) → a real local receiver.

Each terminal status produces exactly one event, delivered signed (verified here with the
official Standard Webhooks library); failed deliveries are retried with the same event id;
rotation keeps receivers working; a delivery whose worker died is recovered by the sweep.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient
from standardwebhooks import Webhook
from werkzeug import Request, Response

from asyncqueue_django import services, signing
from asyncqueue_django.models import Task, Team, WebhookAttempt, WebhookDelivery
from tests.worker import Worker, broker_unreachable, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


class Receiver:
    """A webhook endpoint on the local HTTP server that records what it gets and answers with
    the given status codes in turn (the last one repeats)."""

    def __init__(
        self, httpserver: HTTPServer, path: str = "/hook", statuses: tuple[int, ...] = (200,)
    ):
        self.statuses = list(statuses)
        self.calls: list[tuple[bytes, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.url = httpserver.url_for(path)
        httpserver.expect_request(path, method="POST").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.calls.append((request.get_data(), dict(request.headers)))
            status = self.statuses[min(len(self.calls), len(self.statuses)) - 1]
        return Response("", status=status)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.calls]


def create(client: APIClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/tasks", body, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def delivered(task_id: str, *statuses: str) -> WebhookDelivery | None:
    d = WebhookDelivery.objects.filter(task_id=task_id).first()
    return d if d is not None and d.status in (statuses or ("delivered",)) else None


def assert_one_verified_event(
    receiver: Receiver, secret: str, task_id: str, event: str, status: str
) -> dict[str, Any]:
    """The receiver got exactly one request: the event, signed, with the event's id."""
    assert len(receiver.calls) == 1
    body, headers = receiver.calls[0]
    payload = Webhook(secret).verify(body, headers)  # the official library
    signing.verify(body, {"X-AsyncQueue-Signature": headers["X-Asyncqueue-Signature"]}, [secret])
    assert payload["event"] == event
    assert payload["task"]["id"] == task_id
    assert payload["task"]["status"] == status
    delivery = WebhookDelivery.objects.get(task_id=task_id)
    assert headers["Webhook-Id"] == str(delivery.pk)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("asyncqueue-django/")
    assert (delivery.event, delivery.attempt_count) == (event, 1)
    return dict(payload)


def test_completed_task_sends_one_signed_event(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/work").respond_with_json({"done": True})
    receiver = Receiver(httpserver)
    task_id = create(client, targetUrl=httpserver.url_for("/work"), onCompleteUrl=receiver.url)[
        "task"
    ]["id"]
    wait_for(lambda: delivered(task_id))
    payload = assert_one_verified_event(
        receiver, team.webhook_secret, task_id, "task.completed", "completed"
    )
    assert payload["task"]["result"]["body"] == {"done": True}
    # The task as the API shows it, with the delivery.
    body = client.get(f"/v1/tasks/{task_id}").json()["task"]
    assert {k: v for k, v in payload["task"].items() if k != "updatedAt"} == {
        k: v for k, v in body.items() if k not in ("attempts", "webhookDeliveries", "updatedAt")
    }
    (shown,) = body["webhookDeliveries"]
    assert (shown["event"], shown["status"], shown["attempts"], shown["lastStatusCode"]) == (
        "task.completed",
        "delivered",
        1,
        200,
    )
    assert shown["deliveredAt"] is not None
    assert shown["nextAttemptAt"] is None
    # The callback to the target is signed as well (its id names the task and attempt).
    (callback, _), *_ = httpserver.log
    assert callback.headers["Webhook-Id"] == f"{task_id}-1"
    Webhook(team.webhook_secret).verify(
        callback.get_data(), dict(callback.headers), json_parse=False
    )


def test_failed_task_sends_one_event(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/missing").respond_with_data("no", status=404)
    receiver = Receiver(httpserver)
    task_id = create(client, targetUrl=httpserver.url_for("/missing"), onCompleteUrl=receiver.url)[
        "task"
    ]["id"]
    wait_for(lambda: delivered(task_id))
    payload = assert_one_verified_event(
        receiver, team.webhook_secret, task_id, "task.failed", "failed"
    )
    assert payload["task"]["error"] == "HTTP 404 (not retried)"


def test_timed_out_wait_sends_one_event(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    """Nobody signals: the beat sweep (every second in tests) times the task out."""
    httpserver.expect_request("/start").respond_with_data("started", status=202)
    receiver = Receiver(httpserver)
    created = create(
        client,
        targetUrl=httpserver.url_for("/start"),
        onCompleteUrl=receiver.url,
        waitForSignal=True,
        maxWaitTime=2,
    )
    task_id = created["task"]["id"]
    wait_for(lambda: delivered(task_id))
    payload = assert_one_verified_event(
        receiver, team.webhook_secret, task_id, "task.timeout", "timeout"
    )
    assert payload["task"]["error"] == "No signal within maxWaitTime (2s)"
    # The token answers 409 from now on, and no second event appears.
    signal = APIClient().post(
        f"/v1/signals/{created['signalToken']}", {"status": "completed"}, format="json"
    )
    assert signal.status_code == 409
    assert WebhookDelivery.objects.filter(task_id=task_id).count() == 1


def test_cancelled_task_sends_one_event(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    receiver = Receiver(httpserver)
    task_id = create(
        client, targetUrl=httpserver.url_for("/never"), onCompleteUrl=receiver.url, delay=3600
    )["task"]["id"]
    assert client.post(f"/v1/tasks/{task_id}/cancel").status_code == 200
    wait_for(lambda: delivered(task_id))
    assert_one_verified_event(receiver, team.webhook_secret, task_id, "task.cancelled", "cancelled")
    assert [r.path for r, _ in httpserver.log] == ["/hook"]  # the target was never called


def test_signalled_task_sends_one_event(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/start").respond_with_data("ok")
    receiver = Receiver(httpserver)
    created = create(
        client,
        targetUrl=httpserver.url_for("/start"),
        onCompleteUrl=receiver.url,
        waitForSignal=True,
    )
    task_id = created["task"]["id"]
    wait_for(lambda: Task.objects.filter(pk=task_id, status="waiting").exists())
    response = APIClient().post(
        f"/v1/signals/{created['signalToken']}",
        {"status": "failed", "error": "card declined"},
        format="json",
    )
    assert response.status_code == 200
    wait_for(lambda: delivered(task_id))
    payload = assert_one_verified_event(
        receiver, team.webhook_secret, task_id, "task.failed", "failed"
    )
    assert payload["task"]["error"] == "card declined"


def test_a_failing_receiver_gets_the_same_event_until_it_answers(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    """500, 503, then 200: three attempts, one event id (tests.settings: 0.2 s retries)."""
    httpserver.expect_request("/work").respond_with_data("ok")
    receiver = Receiver(httpserver, statuses=(500, 503, 200))
    task_id = create(client, targetUrl=httpserver.url_for("/work"), onCompleteUrl=receiver.url)[
        "task"
    ]["id"]
    delivery = wait_for(lambda: delivered(task_id))
    assert len(receiver.calls) == 3
    ids = {headers["Webhook-Id"] for _, headers in receiver.calls}
    assert ids == {str(delivery.pk)}
    bodies = {body for body, _ in receiver.calls}
    assert len(bodies) == 1  # the same bytes each time
    for body, headers in receiver.calls:
        Webhook(team.webhook_secret).verify(body, headers)
    assert delivery.attempt_count == 3
    attempts = list(
        WebhookAttempt.objects.filter(delivery=delivery)
        .order_by("number")
        .values_list("number", "status_code")
    )
    assert attempts == [(1, 500), (2, 503), (3, 200)]
    shown = client.get(f"/v1/tasks/{task_id}").json()["task"]["webhookDeliveries"]
    assert [(d["id"], d["status"], d["attempts"]) for d in shown] == [
        (str(delivery.pk), "delivered", 3)
    ]
    # The delivery's troubles never touched the task.
    assert Task.objects.get(pk=task_id).status == "completed"


def test_a_receiver_that_keeps_failing_gives_up_and_410_stops_at_once(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/work").respond_with_data("ok")
    down = Receiver(httpserver, path="/down", statuses=(502,))
    gone = Receiver(httpserver, path="/gone", statuses=(410,))
    failing = create(client, targetUrl=httpserver.url_for("/work"), onCompleteUrl=down.url)
    refusing = create(client, targetUrl=httpserver.url_for("/work"), onCompleteUrl=gone.url)
    d1 = wait_for(lambda: delivered(failing["task"]["id"], "failed"))
    d2 = wait_for(lambda: delivered(refusing["task"]["id"], "gone"))
    assert (d1.attempt_count, len(down.calls)) == (4, 4)  # 1 + three retries
    assert (d2.attempt_count, len(gone.calls)) == (1, 1)
    assert Task.objects.get(pk=failing["task"]["id"]).status == "completed"


def test_rotation_a_receiver_with_only_the_new_secret_verifies(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    old = team.webhook_secret
    new = services.rotate_webhook_secret(team)
    httpserver.expect_request("/work").respond_with_data("ok")
    receiver = Receiver(httpserver)
    task_id = create(client, targetUrl=httpserver.url_for("/work"), onCompleteUrl=receiver.url)[
        "task"
    ]["id"]
    wait_for(lambda: delivered(task_id))
    (body, headers) = receiver.calls[0]
    assert Webhook(new).verify(body, headers)["event"] == "task.completed"  # only the new one
    Webhook(old).verify(body, headers)  # receivers not yet switched keep working
    signing.verify(body, {"X-AsyncQueue-Signature": headers["X-Asyncqueue-Signature"]}, [new])
    assert len(headers["X-Asyncqueue-Signature"].split(",v1=")) == 3  # t=…,v1=…,v1=…


def test_resend_delivers_the_same_event_again(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    receiver = Receiver(httpserver)
    task_id = create(
        client, targetUrl=httpserver.url_for("/x"), onCompleteUrl=receiver.url, delay=3600
    )["task"]["id"]
    client.post(f"/v1/tasks/{task_id}/cancel")
    delivery = wait_for(lambda: delivered(task_id))
    services.resend_webhook(delivery)
    wait_for(
        lambda: WebhookDelivery.objects.filter(
            pk=delivery.pk, attempt_count=2, status="delivered"
        ).exists()
    )
    assert len(receiver.calls) == 2
    assert receiver.calls[0][0] == receiver.calls[1][0]
    assert {h["Webhook-Id"] for _, h in receiver.calls} == {str(delivery.pk)}


def test_a_delivery_whose_worker_died_is_recovered_by_the_sweep(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    """A worker claimed the event and died mid-call: the lease expires, the recovery sweep
    records the lost attempt, and a live worker delivers the same event."""
    receiver = Receiver(httpserver)
    task = services.create_task(
        team,
        services.TaskSpec(
            target_url=httpserver.url_for("/x"),
            on_complete_url=receiver.url,
            delay_until=timezone.now() + timedelta(hours=1),
        ),
    ).task
    with broker_unreachable():  # the event's message is lost with the broker
        services.cancel_task(team, task.pk)
    delivery = WebhookDelivery.objects.get(task=task)
    dead = services.claim_webhook(delivery.pk, "dead-worker")
    assert dead is not None
    # Time passes: the dead worker's lease runs out. The recovery sweep on beat (every 5 s in
    # tests) records the lost attempt and sends the event again; the live worker delivers it.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    done = wait_for(lambda: delivered(str(task.pk)))
    assert done.attempt_count == 2
    assert list(done.attempts.order_by("number").values_list("error", "status_code")) == [
        ("worker lost (lease expired)", None),
        ("", 200),
    ]
    assert {h["Webhook-Id"] for _, h in receiver.calls} == {str(delivery.pk)}


def test_an_event_whose_message_was_lost_is_sent_by_the_recovery_sweep(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    receiver = Receiver(httpserver)
    task_id = create(
        client, targetUrl=httpserver.url_for("/x"), onCompleteUrl=receiver.url, delay=3600
    )["task"]["id"]
    with broker_unreachable():
        assert client.post(f"/v1/tasks/{task_id}/cancel").status_code == 200
    delivery = WebhookDelivery.objects.get(task_id=task_id)
    assert delivery.status == "pending"
    assert receiver.calls == []
    assert delivery.dispatched_at is not None
    assert (
        services.redispatch_lost_webhooks(now=delivery.dispatched_at + timedelta(seconds=61)) == 1
    )
    wait_for(lambda: delivered(task_id))
    assert len(receiver.calls) == 1


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="cutting server sessions needs PostgreSQL"
)
def test_the_worker_recovers_after_the_database_drops_its_connections(
    client: APIClient, team: Team, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    """The database drops every session (failover, restart): the worker's next tasks reopen
    their connections instead of failing until Celery recycles them hundreds of tasks later."""
    httpserver.expect_request("/work").respond_with_data("ok")
    receiver = Receiver(httpserver)
    first = create(client, targetUrl=httpserver.url_for("/work"), onCompleteUrl=receiver.url)
    wait_for(lambda: delivered(first["task"]["id"]))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [connection.settings_dict["NAME"]],
        )
    ids = [
        create(client, targetUrl=httpserver.url_for("/work"), onCompleteUrl=receiver.url)["task"][
            "id"
        ]
        for _ in range(8)
    ]
    for task_id in ids:
        wait_for(lambda task_id=task_id: delivered(task_id))
    assert Task.objects.filter(pk__in=ids, status="completed").count() == 8
