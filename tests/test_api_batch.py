"""``POST /v1/tasks/batch``: every item validated first (errors keyed by index, nothing
created), then all created in one transaction and dispatched after it commits; per-item
idempotency keys; one request per item against the rate limit; and, on PostgreSQL with a real
worker, a batch of 100 that all run."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient

from asyncqueue_django import services, tokens
from asyncqueue_django.models import Task, Team
from asyncqueue_django.services import engine
from asyncqueue_django.values import Message
from tests.worker import Worker, wait_for

TARGET = "http://127.0.0.1:9/run"
URL = "/v1/tasks/batch"


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[Message]:
    sent: list[Message] = []
    monkeypatch.setattr(engine, "publisher", sent.append)
    return sent


def item(i: int = 0, **fields: Any) -> dict[str, Any]:
    return {"targetUrl": TARGET, "payload": {"n": i}, **fields}


def test_all_valid_items_are_created_in_order_and_woken_after_commit(
    client: APIClient, published: list[Message], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(
            URL,
            {"tasks": [item(0), item(1, waitForSignal=True), item(2, delay=3600)]},
            format="json",
        )
        assert published == []  # nothing leaves before the commit
    assert response.status_code == 201, response.content
    entries = response.json()["tasks"]
    assert [e["task"]["payload"] for e in entries] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [set(e) for e in entries] == [{"task"}, {"task", "signalToken"}, {"task"}]
    assert tokens.is_signal_token(entries[1]["signalToken"])
    assert [e["task"]["status"] for e in entries] == ["pending", "pending", "delayed"]
    assert Task.objects.count() == 3
    assert len(callbacks) == 1  # one transaction
    # One wake-up for the queue (the delayed task waits for its time), not one per task.
    assert [(m.task_name, m.args[:2]) for m in published] == [
        ("asyncqueue.run_due", ("task", "default"))
    ]


@pytest.mark.parametrize(
    ("tasks", "field"),
    [
        ([item(0), {"payload": 1}, item(2)], "tasks[1].targetUrl"),
        ([item(0), item(1, priority="high")], "tasks[1].priority"),
        ([item(0), item(1, bogus=True)], "tasks[1].bogus"),
        ([item(0), "not an object"], "tasks[1].body"),
        ([item(0, timeout=0), item(1)], "tasks[0].timeout"),
        ([item(0, targetUrl="ftp://x.example/")], "tasks[0].targetUrl"),
    ],
)
def test_one_invalid_item_refuses_the_whole_batch(
    client: APIClient, tasks: list[Any], field: str
) -> None:
    response = client.post(URL, {"tasks": tasks}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["fields"], body
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tasks": []}, "tasks"),
        ({"tasks": [item(i) for i in range(101)]}, "tasks"),
        ({"tasks": item()}, "tasks"),
        ({}, "tasks"),
        ({"tasks": [item()], "extra": 1}, "extra"),
        ([item()], "body"),
    ],
)
def test_the_batch_shape_is_checked(client: APIClient, body: Any, field: str) -> None:
    response = client.post(URL, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert not Task.objects.exists()


def test_malformed_json_and_auth(client: APIClient, anon: APIClient) -> None:
    bad = client.post(URL, b"{", content_type="application/json")
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_json"
    assert anon.post(URL, {"tasks": [item()]}, format="json").status_code == 401
    assert client.get(URL).status_code in (404, 405)


def test_vault_references_are_checked_for_every_item(client: APIClient, team: Team) -> None:
    live = services.create_token(team, "ok", "secret-value")
    missing = tokens.new_vault_token_id()
    response = client.post(
        URL,
        {
            "tasks": [
                item(0, headers={"Authorization": live.pk}),
                item(1, headers={"X-Key": missing}),
            ]
        },
        format="json",
    )
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["tasks[1].headers.X-Key"]
    assert not Task.objects.exists()


def test_each_item_may_carry_an_idempotency_key(client: APIClient) -> None:
    first = client.post(URL, {"tasks": [item(0, idempotencyKey="k0")]}, format="json").json()
    again = client.post(
        URL, {"tasks": [item(1), item(0, idempotencyKey="k0")]}, format="json"
    ).json()
    assert again["tasks"][1]["task"]["id"] == first["tasks"][0]["task"]["id"]
    assert Task.objects.count() == 2

    conflict = client.post(URL, {"tasks": [item(2), item(9, idempotencyKey="k0")]}, format="json")
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "idempotency_conflict"
    assert conflict.json()["error"].startswith("tasks[1]: ")
    assert Task.objects.count() == 2  # item 0 of that batch was rolled back

    twice = client.post(
        URL,
        {"tasks": [item(3, idempotencyKey="k1"), item(4, idempotencyKey="k1")]},
        format="json",
    )
    assert twice.status_code == 400
    assert "tasks[1].idempotencyKey" in twice.json()["fields"]
    header = client.post(URL, {"tasks": [item()]}, format="json", HTTP_IDEMPOTENCY_KEY="x")
    assert header.status_code == 400
    assert "Idempotency-Key" in header.json()["fields"]


def test_each_item_counts_against_the_rate_limit(client: APIClient) -> None:
    with override_settings(ASYNCQUEUE={**settings.ASYNCQUEUE, "RATE_LIMIT": "10/min"}):
        first = client.post(URL, {"tasks": [item(i) for i in range(8)]}, format="json")
        assert first.status_code == 201
        assert first["X-RateLimit-Remaining"] == "2"
        over = client.post(URL, {"tasks": [item(i) for i in range(3)]}, format="json")
        assert over.status_code == 429
        assert "Retry-After" in over
    assert Task.objects.count() == 8


def test_a_test_key_creates_sandbox_tasks_in_a_batch(team: Team) -> None:
    c = APIClient()
    c.credentials(HTTP_X_API_KEY=services.create_api_key(team, mode="test").raw_key)
    entries = c.post(URL, {"tasks": [item(0), item(1)]}, format="json").json()["tasks"]
    assert [e["task"]["sandbox"] for e in entries] == [True, True]


# --------------------------------------------------------------------------- PostgreSQL


on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the batch-of-100 acceptance runs on PostgreSQL"
)


@on_postgres
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_batch_of_100_on_postgresql(celery_worker: Worker, httpserver: HTTPServer) -> None:
    team = services.get_or_create_team("batch100")[0]
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {services.create_api_key(team).raw_key}")
    httpserver.expect_request("/run").respond_with_json({"ok": True})
    target = httpserver.url_for("/run")
    bodies = [{"targetUrl": target, "payload": {"n": i}} for i in range(100)]

    broken = [*bodies[:57], {"targetUrl": target, "maxRetries": -1}, *bodies[58:]]
    refused = c.post(URL, {"tasks": broken}, format="json")
    assert refused.status_code == 400
    assert list(refused.json()["fields"]) == ["tasks[57].maxRetries"]
    assert not Task.objects.filter(team=team).exists()

    created = c.post(URL, {"tasks": bodies}, format="json")
    assert created.status_code == 201
    ids = [e["task"]["id"] for e in created.json()["tasks"]]
    assert len(set(ids)) == 100
    wait_for(lambda: Task.objects.filter(pk__in=ids, status="completed").count() == 100, 90)
    assert sorted(r.get_json()["n"] for r, _ in httpserver.log) == list(range(100))
