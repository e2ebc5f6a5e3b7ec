"""End to end: API → broker → a real Celery worker → a real local HTTP target → API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient
from werkzeug import Request, Response

from asyncqueue_django.models import Attempt, Task
from tests.worker import Worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _status(task_id: str, *statuses: str) -> Task | None:
    task = Task.objects.filter(pk=task_id).first()
    return task if task and task.status in statuses else None


def test_callback_delivers_exact_request_and_completes(
    client: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/convert", method="PUT").respond_with_json(
        {"converted": True}, status=200
    )
    response = client.post(
        "/v1/tasks",
        {
            "targetUrl": httpserver.url_for("/convert"),
            "method": "PUT",
            "headers": {"X-Custom": "yes"},
            "payload": {"videoId": "abc123"},
        },
        format="json",
    )
    assert response.status_code == 201
    task_id = response.json()["task"]["id"]

    wait_for(lambda: _status(task_id, "completed", "failed"))
    (request, _), *_ = httpserver.log
    assert request.method == "PUT"
    assert json.loads(request.get_data()) == {"videoId": "abc123"}
    assert request.headers["X-Custom"] == "yes"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-AsyncQueue-Task-Id"] == task_id
    assert request.headers["X-AsyncQueue-Attempt"] == "1"
    assert request.headers["User-Agent"].startswith("asyncqueue-django/")

    body = client.get(f"/v1/tasks/{task_id}").json()["task"]
    assert body["status"] == "completed"
    assert body["result"]["statusCode"] == 200
    assert body["result"]["body"] == {"converted": True}
    assert isinstance(body["result"]["duration"], int)
    assert [a["statusCode"] for a in body["attempts"]] == [200]
    assert body["attempts"][0]["outcome"] == "succeeded"


def test_retry_then_succeed(
    client: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    httpserver.expect_ordered_request("/flaky").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/flaky").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/flaky").respond_with_json({"ok": 1})
    task_id = client.post(
        "/v1/tasks", {"targetUrl": httpserver.url_for("/flaky"), "maxRetries": 3}, format="json"
    ).json()["task"]["id"]

    task = wait_for(lambda: _status(task_id, "completed", "failed"))
    assert task.status == "completed"
    assert task.retry_count == 2
    outcomes = list(
        Attempt.objects.filter(task_id=task_id)
        .order_by("number")
        .values_list("number", "status_code", "outcome")
    )
    assert outcomes == [(1, 503, "retrying"), (2, 503, "retrying"), (3, 200, "succeeded")]


def test_exhausted_retries_fail_with_readable_error(
    client: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/down").respond_with_data("no", status=503)
    task_id = client.post(
        "/v1/tasks", {"targetUrl": httpserver.url_for("/down"), "maxRetries": 2}, format="json"
    ).json()["task"]["id"]
    task = wait_for(lambda: _status(task_id, "completed", "failed"))
    assert task.status == "failed"
    assert task.error == "HTTP 503 after 3 attempts"
    assert Attempt.objects.filter(task_id=task_id).count() == 3


def test_client_error_fails_fast(
    client: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/missing").respond_with_data("nope", status=404)
    task_id = client.post(
        "/v1/tasks", {"targetUrl": httpserver.url_for("/missing")}, format="json"
    ).json()["task"]["id"]
    task = wait_for(lambda: _status(task_id, "completed", "failed"))
    assert task.error == "HTTP 404 (not retried)"
    assert task.retry_count == 0
    assert Attempt.objects.filter(task_id=task_id).count() == 1


def test_wait_for_signal_task_waits_after_callback(
    client: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    def handler(request: Request) -> Response:
        return Response("started", status=202)

    httpserver.expect_request("/start-review").respond_with_handler(handler)
    created = client.post(
        "/v1/tasks",
        {
            "targetUrl": httpserver.url_for("/start-review"),
            "payload": {"documentId": "doc_456"},
            "waitForSignal": True,
            "maxWaitTime": 86400,
        },
        format="json",
    ).json()
    assert len(created["signalToken"]) == 64
    task = wait_for(lambda: _status(created["task"]["id"], "waiting", "failed"))
    assert task.status == "waiting"
    assert (task.wait_deadline - task.updated_at).total_seconds() == pytest.approx(86400, abs=2)
    body: dict[str, Any] = client.get(f"/v1/tasks/{task.pk}").json()["task"]
    assert body["waitDeadline"] is not None
    assert body["result"]["statusCode"] == 202
