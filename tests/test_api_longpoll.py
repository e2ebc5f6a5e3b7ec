"""``GET /v1/tasks/{id}?wait=N``: held until the status changes or N seconds pass."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connections
from rest_framework.test import APIClient

from asyncqueue_django import services
from asyncqueue_django.models import Team
from asyncqueue_django.services import TaskSpec


def _task(team: Team) -> str:
    spec = TaskSpec(target_url="http://127.0.0.1:9/", queue="unconsumed")
    return str(services.create_task(team, spec).task.pk)


@pytest.mark.django_db(transaction=True)
def test_returns_as_soon_as_the_status_changes(client: APIClient, team: Team) -> None:
    task_id = _task(team)

    def cancel_soon() -> None:
        time.sleep(0.5)
        try:
            services.cancel_task(team, task_id)
        finally:
            connections.close_all()

    canceller = threading.Thread(target=cancel_soon)
    started = time.monotonic()
    canceller.start()
    response = client.get(f"/v1/tasks/{task_id}?wait=20")
    elapsed = time.monotonic() - started
    canceller.join()
    assert response.status_code == 200
    assert response.json()["task"]["status"] == "cancelled"
    assert 0.5 <= elapsed < 20  # it waited for the change, not for the whole 20 s


@pytest.mark.django_db(transaction=True)
def test_returns_the_current_state_when_the_wait_is_over(client: APIClient, team: Team) -> None:
    task_id = _task(team)
    started = time.monotonic()
    response = client.get(f"/v1/tasks/{task_id}?wait=1")
    assert time.monotonic() - started >= 1
    assert response.status_code == 200
    assert response.json()["task"]["status"] == "pending"


@pytest.mark.django_db(transaction=True)
def test_a_terminal_task_answers_at_once(client: APIClient, team: Team) -> None:
    task_id = _task(team)
    services.cancel_task(team, task_id)
    started = time.monotonic()
    response = client.get(f"/v1/tasks/{task_id}?wait=25")
    assert time.monotonic() - started < 25
    assert response.json()["task"]["status"] == "cancelled"


@pytest.mark.parametrize("wait", ["26", "-1", "abc", "1.5"])
def test_bad_wait_is_400(client: APIClient, team: Team, wait: str) -> None:
    response = client.get(f"/v1/tasks/{_task(team)}?wait={wait}")
    assert response.status_code == 400
    assert "wait" in response.json()["fields"]


def test_another_teams_task_is_404_without_waiting(client: APIClient, db: Any) -> None:
    other = services.get_or_create_team("other")[0]
    task_id = _task(other)
    started = time.monotonic()
    response = client.get(f"/v1/tasks/{task_id}?wait=25")
    assert time.monotonic() - started < 25
    assert response.status_code == 404


def test_wait_zero_is_a_plain_get(client: APIClient, team: Team) -> None:
    response = client.get(f"/v1/tasks/{_task(team)}?wait=0")
    assert response.status_code == 200
    assert response.json()["task"]["status"] == "pending"
