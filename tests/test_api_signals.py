"""``/v1/signals/{token}`` and its heartbeat: every case of the API reference and lifecycle."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from asyncqueue_django import services, tokens
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import Task, Team
from asyncqueue_django.services import TaskSpec


@pytest.fixture(autouse=True)
def _fresh_throttle_cache() -> None:
    cache.clear()


def waiting_task(team: Team, max_wait: int = 3600) -> tuple[Task, str]:
    created = services.create_task(
        team,
        TaskSpec(target_url="http://127.0.0.1:9/", wait_for_signal=True, max_wait_time=max_wait),
    )
    task = services.claim_task(created.task.pk, "w")
    assert task is not None
    services.finish_attempt(task, CallResult(status_code=200, duration_ms=1), worker="w")
    task.refresh_from_db()
    assert task.status == "waiting"
    assert created.signal_token is not None
    return task, created.signal_token


def signal(token: str, body: Any, **extra: Any) -> Any:
    return APIClient().post(f"/v1/signals/{token}", body, format="json", **extra)


def test_signal_completes_a_waiting_task(team: Team) -> None:
    _, token = waiting_task(team)
    response = signal(token, {"status": "completed", "result": {"paymentId": "pi_1"}})
    assert response.status_code == 200
    body = response.json()["task"]
    assert body["status"] == "completed"
    assert body["result"] == {"paymentId": "pi_1"}
    assert body["completedAt"] is not None
    assert body["signalReceivedAt"] is not None


def test_signal_fails_a_waiting_task_with_error(team: Team) -> None:
    _, token = waiting_task(team)
    response = signal(token, {"status": "failed", "error": "card declined"})
    assert response.status_code == 200
    assert response.json()["task"]["status"] == "failed"
    assert response.json()["task"]["error"] == "card declined"


def test_second_different_signal_is_409_naming_status_but_exact_replay_is_200(team: Team) -> None:
    _, token = waiting_task(team)
    first = {"status": "completed", "result": {"n": 1}}
    assert signal(token, first).status_code == 200
    replay = signal(token, first)
    assert replay.status_code == 200
    assert replay.json()["task"]["result"] == {"n": 1}
    other = signal(token, {"status": "failed"})
    assert other.status_code == 409
    assert other.json() == {
        "error": "Cannot signal this task: it has completed",
        "code": "invalid_status",
        "status": "completed",
    }


def test_signal_after_deadline_times_the_task_out_then_and_there(team: Team) -> None:
    task, token = waiting_task(team)
    Task.objects.filter(pk=task.pk).update(wait_deadline=timezone.now() - timedelta(seconds=1))
    response = signal(token, {"status": "completed"})
    assert response.status_code == 409
    assert response.json()["status"] == "timeout"
    task.refresh_from_db()
    assert task.status == "timeout"
    assert task.error == "No signal within maxWaitTime (3600s)"


@pytest.mark.parametrize("status", ["cancelled", "timeout"])
def test_signal_to_cancelled_or_timed_out_task_is_409(team: Team, status: str) -> None:
    task, token = waiting_task(team)
    if status == "cancelled":
        services.cancel_task(team, task.pk)
    else:
        Task.objects.filter(pk=task.pk).update(wait_deadline=timezone.now() - timedelta(seconds=1))
        services.expire_overdue()
    response = signal(token, {"status": "completed"})
    assert response.status_code == 409
    assert response.json()["status"] == status


@pytest.mark.parametrize("phase", ["pending", "delayed", "processing"])
def test_early_signal_is_recorded_with_202_and_applied_when_the_callback_succeeds(
    team: Team, phase: str
) -> None:
    spec = TaskSpec(target_url="http://127.0.0.1:9/", wait_for_signal=True)
    if phase == "delayed":
        spec.delay_until = timezone.now() + timedelta(seconds=1)
    created = services.create_task(team, spec)
    token = created.signal_token or ""
    if phase == "processing":
        services.claim_task(created.task.pk, "w")
    response = signal(token, {"status": "completed", "result": {"approved": True}})
    assert response.status_code == 202
    body = response.json()["task"]
    assert body["status"] == phase
    assert body["earlySignal"] == {
        "status": "completed",
        "result": {"approved": True},
        "error": None,
    }
    # The same early signal again is still 202; a different one is refused.
    assert signal(token, {"status": "completed", "result": {"approved": True}}).status_code == 202
    conflict = signal(token, {"status": "failed"})
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "already_signalled"

    later = timezone.now() + timedelta(seconds=2)
    task = (
        services.claim_task(created.task.pk, "w2", now=later)
        if phase != "processing"
        else (Task.objects.get(pk=created.task.pk))
    )
    assert task is not None
    worker = "w2" if phase != "processing" else "w"
    status = services.finish_attempt(task, CallResult(status_code=200), worker=worker)
    assert status == "completed"  # straight to the signalled outcome, never "waiting"
    task.refresh_from_db()
    assert task.result == {"approved": True}
    assert task.wait_deadline is None


def test_early_signal_stays_visible_when_the_callback_fails_for_good(
    team: Team, client: APIClient
) -> None:
    created = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", wait_for_signal=True, max_retries=0)
    )
    assert signal(created.signal_token or "", {"status": "completed"}).status_code == 202
    task = services.claim_task(created.task.pk, "w")
    assert task is not None
    assert services.finish_attempt(task, CallResult(status_code=500), worker="w") == "failed"
    body = client.get(f"/v1/tasks/{task.pk}").json()["task"]
    assert body["status"] == "failed"
    assert body["error"] == "HTTP 500 after 1 attempt"
    assert body["earlySignal"] == {"status": "completed", "result": None, "error": None}


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("0" * 64, 404),  # well-formed, unknown
        ("not-a-token", 404),
        ("A" * 64, 404),  # upper case is not our format
    ],
)
def test_unknown_token_is_404(db: Any, token: str, code: int) -> None:
    response = signal(token, {"status": "completed"})
    assert response.status_code == code
    assert response.json() == {"error": "Unknown signal token", "code": "not_found"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "status"),
        ({"status": "done"}, "status"),
        ({"status": 1}, "status"),
        ({"status": "completed", "error": 5}, "error"),
        ({"status": "completed", "extra": 1}, "extra"),
        ([1, 2], "body"),
        ("completed", "body"),
    ],
)
def test_bad_signal_body_is_400_naming_the_field(team: Team, body: Any, field: str) -> None:
    _, token = waiting_task(team)
    response = signal(token, body)
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_oversize_result_is_400(team: Team) -> None:
    _, token = waiting_task(team)
    with override_settings(ASYNCQUEUE={"MAX_BODY_BYTES": 100, "MAX_REQUEST_BYTES": 4096}):
        response = signal(token, {"status": "completed", "result": {"blob": "x" * 500}})
    assert response.status_code == 400
    assert "result" in response.json()["fields"]


def test_malformed_json_is_400(team: Team) -> None:
    _, token = waiting_task(team)
    response = APIClient().post(f"/v1/signals/{token}", "{", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


def test_signals_need_no_api_key_and_accept_a_trailing_slash(team: Team) -> None:
    _, token = waiting_task(team)
    assert signal(token + "/", {"status": "completed"}).status_code == 200


def test_signals_are_rate_limited_per_client_ip(db: Any) -> None:
    with override_settings(ASYNCQUEUE={"SIGNAL_RATE_LIMIT": "3/min"}):
        codes = [signal("0" * 64, {"status": "completed"}).status_code for _ in range(4)]
        other_ip = signal("0" * 64, {"status": "completed"}, REMOTE_ADDR="10.9.9.9")
    assert codes == [404, 404, 404, 429]
    assert other_ip.status_code == 404


def test_rate_limited_response_has_retry_after(db: Any) -> None:
    with override_settings(ASYNCQUEUE={"SIGNAL_RATE_LIMIT": "1/min"}):
        signal("0" * 64, {"status": "completed"})
        response = signal("0" * 64, {"status": "completed"})
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["code"] == "rate_limited"


def test_token_plaintext_is_stored_nowhere(team: Team) -> None:
    created = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", wait_for_signal=True)
    )
    token = created.signal_token or ""
    row = Task.objects.filter(pk=created.task.pk).values().get()
    assert token not in repr(row)
    assert row["signal_token_digest"] == tokens.digest(token)


def test_cancel_of_waiting_task_invalidates_its_token(team: Team) -> None:
    task, token = waiting_task(team)
    services.cancel_task(team, task.pk)
    assert signal(token, {"status": "completed"}).status_code == 409


# ---------------------------------------------------------------- heartbeat


def test_heartbeat_pushes_the_deadline_out(team: Team) -> None:
    task, token = waiting_task(team, max_wait=60)
    before = task.wait_deadline
    assert before is not None
    response = APIClient().post(f"/v1/signals/{token}/heartbeat", {"extendBy": 3600}, format="json")
    assert response.status_code == 200
    task.refresh_from_db()
    assert task.wait_deadline is not None
    assert task.wait_deadline > before + timedelta(seconds=3000)


def test_heartbeat_never_shortens_and_is_capped(team: Team) -> None:
    task, token = waiting_task(team, max_wait=7200)
    before = task.wait_deadline
    APIClient().post(f"/v1/signals/{token}/heartbeat", {"extendBy": 10}, format="json")
    task.refresh_from_db()
    assert task.wait_deadline == before
    with override_settings(ASYNCQUEUE={"MAX_WAIT_TIME": 100, "DEFAULT_MAX_WAIT_TIME": 50}):
        too_far = APIClient().post(
            f"/v1/signals/{token}/heartbeat", {"extendBy": 101}, format="json"
        )
    assert too_far.status_code == 400
    assert "extendBy" in too_far.json()["fields"]


def test_heartbeat_when_not_waiting_is_409(team: Team) -> None:
    created = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", wait_for_signal=True)
    )
    response = APIClient().post(
        f"/v1/signals/{created.signal_token}/heartbeat", {"extendBy": 60}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["status"] == "pending"


@pytest.mark.parametrize("body", [{}, {"extendBy": 0}, {"extendBy": "60"}, {"extendBy": 1.5}])
def test_bad_heartbeat_body_is_400(team: Team, body: dict[str, Any]) -> None:
    _, token = waiting_task(team)
    response = APIClient().post(f"/v1/signals/{token}/heartbeat", body, format="json")
    assert response.status_code == 400
    assert "extendBy" in response.json()["fields"]


# ---------------------------------------------------------------- expiry sweep


def test_expiry_sweep_times_out_only_overdue_waits(team: Team) -> None:
    overdue, _ = waiting_task(team)
    fresh, _ = waiting_task(team)
    now = timezone.now()
    Task.objects.filter(pk=overdue.pk).update(wait_deadline=now - timedelta(seconds=1))
    assert services.expire_overdue(now=now) == 1
    overdue.refresh_from_db()
    fresh.refresh_from_db()
    assert (overdue.status, fresh.status) == ("timeout", "waiting")
    assert overdue.completed_at == now
    assert services.expire_overdue(now=now) == 0


def test_expiry_sweep_works_in_batches(team: Team) -> None:
    tasks = [waiting_task(team)[0] for _ in range(7)]
    now = timezone.now()
    Task.objects.filter(pk__in=[t.pk for t in tasks]).update(wait_deadline=now)
    with override_settings(ASYNCQUEUE={"SWEEP_BATCH_SIZE": 3, "ALLOW_PRIVATE_TARGETS": True}):
        assert services.expire_overdue(now=now) == 7
    assert Task.objects.filter(status="timeout").count() == 7


def test_a_bad_status_lists_the_valid_ones(team: Team) -> None:
    _task, token = waiting_task(team)
    response = signal(token, {"status": "complete"})
    assert response.status_code == 400
    assert response.json()["fields"]["status"] == (
        '"complete" is not valid; use one of "completed", "failed".'
    )


def test_409_names_the_status_in_a_sentence(team: Team) -> None:
    task, token = waiting_task(team)
    Task.objects.filter(pk=task.pk).update(status="timeout")
    response = signal(token, {"status": "completed"})
    assert response.status_code == 409
    assert response.json()["error"] == "Cannot signal this task: it has timed out"
    assert response.json()["status"] == "timeout"
