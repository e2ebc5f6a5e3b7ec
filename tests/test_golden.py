"""What a refactor must not change, pinned byte for byte: the body of a webhook event, the JSON
of ``GET /v1/tasks/{id}`` for a fixed task, and the OpenAPI document.

The expected files live in ``tests/golden/``. A deliberate change of the output regenerates
them with ``ASYNCQUEUE_UPDATE_GOLDEN=1 ./dev test tests/test_golden.py`` and commits the diff,
so every change of the public JSON shows up in review.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from asyncqueue_django import representation, services
from asyncqueue_django.models import Attempt, Task, Team, WebhookAttempt, WebhookDelivery

GOLDEN = Path(__file__).parent / "golden"
TASK_ID = uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
DELIVERY_ID = uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c")


def at(second: int, micro: int = 0) -> datetime:
    return datetime(2026, 1, 2, 3, 4, second, micro, tzinfo=UTC)


def check(name: str, actual: bytes) -> None:
    """Compare ``actual`` with ``tests/golden/<name>`` (or rewrite it on request)."""
    path = GOLDEN / name
    if os.environ.get("ASYNCQUEUE_UPDATE_GOLDEN"):
        path.write_bytes(actual)
    expected = path.read_bytes()
    assert actual == expected, (
        f"{name} changed; if that is intended, regenerate it with ASYNCQUEUE_UPDATE_GOLDEN=1\n"
        f"--- expected\n{expected.decode()}\n+++ actual\n{actual.decode()}"
    )


@pytest.fixture
def fixed_task(team: Team) -> Task:
    """A completed task with one attempt and one delivered webhook event, every field fixed.

    JSON objects are written with their keys in the order PostgreSQL's ``jsonb`` keeps them
    (shorter keys first, then bytewise), so both backends give back the same order.
    """
    Task.objects.create(
        id=TASK_ID,
        team=team,
        status="completed",
        target_url="https://example.com/hook?x=1",
        method="POST",
        headers={"X-Trace": "abc \u00e9", "Authorization": "Bearer s3cret"},
        payload={"ok": True, "note": None, "items": ["a", "b"], "order": 42, "ratio": 0.5},
        timeout=30,
        delay_until=at(1, 500),
        priority=7,
        queue="default",
        max_retries=3,
        retry_backoff="linear",
        retry_count=1,
        attempt_count=2,
        next_attempt_at=at(2),
        wait_for_signal=True,
        max_wait_time=600,
        wait_deadline=at(50, 999999),
        on_complete_url="https://example.com/done",
        metadata={"nested": {"k": [1, 2]}, "customer": "c-1"},
        result={"body": {"ok": True}, "headers": {}, "duration": 12, "statusCode": 200},
        error="",
        idempotency_key="key-1",
        signal_received_at=at(20, 123456),
        early_signal_status="completed",
        early_signal_result={"via": "early"},
        early_signal_error="",
        started_at=at(3),
        completed_at=at(21),
    )
    # auto_now / auto_now_add fields take their fixed values through an UPDATE.
    Task.objects.filter(pk=TASK_ID).update(created_at=at(0, 1), updated_at=at(21))
    Attempt.objects.create(
        task_id=TASK_ID,
        number=1,
        started_at=at(3),
        duration_ms=None,
        status_code=None,
        error="worker lost (lease expired)",
        outcome="worker_lost",
        worker="w1",
    )
    Attempt.objects.create(
        task_id=TASK_ID,
        number=2,
        started_at=at(10, 250000),
        duration_ms=12,
        status_code=200,
        error="",
        outcome="succeeded",
        worker="w2",
    )
    WebhookDelivery.objects.create(
        id=DELIVERY_ID,
        task_id=TASK_ID,
        event="task.completed",
        url="https://example.com/done",
        status="delivered",
        attempt_count=1,
        last_status_code=200,
        next_attempt_at=at(21),
        delivered_at=at(22),
    )
    WebhookDelivery.objects.filter(pk=DELIVERY_ID).update(created_at=at(21), updated_at=at(22))
    WebhookAttempt.objects.create(
        delivery_id=DELIVERY_ID,
        number=1,
        started_at=at(22),
        duration_ms=5,
        status_code=200,
        error="",
        worker="w3",
    )
    return Task.objects.get(pk=TASK_ID)


def test_get_task_json_is_unchanged(fixed_task: Task, client: APIClient) -> None:
    response = client.get(f"/v1/tasks/{TASK_ID}")
    assert response.status_code == 200
    check("get_task.json", response.content)


def test_webhook_body_bytes_are_unchanged(fixed_task: Task) -> None:
    delivery = WebhookDelivery.objects.select_related("task__team").get(pk=DELIVERY_ID)
    check("webhook_body.json", representation.event_body(delivery).encode("utf-8"))


def test_openapi_document_is_unchanged(db: Any) -> None:
    response = APIClient().get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    document = json.loads(response.content)
    rendered = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    check("openapi.json", rendered.encode("utf-8"))


def test_the_team_of_the_fixed_task_is_the_fixture_team(fixed_task: Task, team: Team) -> None:
    assert fixed_task.team_id == team.pk
    assert services.get_task(team, TASK_ID).pk == TASK_ID


HOST_SETTINGS = {
    "TIME_ZONE": "Asia/Kolkata",  # UTC+05:30: any conversion to it would show
    "REST_FRAMEWORK": {"DATETIME_FORMAT": "%d/%m/%Y %H:%M"},
}


def test_host_time_zone_and_datetime_format_change_no_api_date(
    fixed_task: Task, client: APIClient
) -> None:
    """Dates in API answers are ISO 8601 in UTC whatever the host's settings say."""
    with override_settings(**HOST_SETTINGS):
        response = client.get(f"/v1/tasks/{TASK_ID}")
        listed = client.get("/v1/tasks").json()["tasks"][0]
    check("get_task.json", response.content)
    assert listed["createdAt"] == "2026-01-02T03:04:00.000001Z"


def test_host_time_zone_and_datetime_format_change_no_webhook_date(fixed_task: Task) -> None:
    """Webhook bodies carry ISO 8601 UTC dates whatever the host's settings say."""
    delivery = WebhookDelivery.objects.select_related("task__team").get(pk=DELIVERY_ID)
    with override_settings(**HOST_SETTINGS):
        body = representation.event_body(delivery).encode("utf-8")
    check("webhook_body.json", body)
