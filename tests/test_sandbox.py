"""Test and live keys: ``aq_live_…`` (default) and ``aq_test_…`` keys from the service, the
command and the admin; older keys keep working; a test key's tasks are sandbox tasks that are
stored and shown but never call their target (they complete at once with the sandbox result,
or wait for a signal and time out), and their webhooks still fire."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient

from asyncqueue_django import services, tokens
from asyncqueue_django.models import ApiKey, Attempt, Task, Team, WebhookDelivery
from asyncqueue_django.services import TaskSpec
from asyncqueue_django.tasks import execute_task
from tests.worker import Worker, wait_for

TARGET = "http://127.0.0.1:9/never-called"
SANDBOX_RESULT = {"statusCode": 200, "sandbox": True}


def api(raw_key: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return c


@pytest.fixture
def test_client(team: Team) -> APIClient:
    return api(services.create_api_key(team, "sandbox", mode="test").raw_key)


# --------------------------------------------------------------------------- keys


def test_keys_say_their_mode(team: Team) -> None:
    live = services.create_api_key(team)
    test = services.create_api_key(team, mode="test")
    assert live.raw_key.startswith("aq_live_")
    assert live.api_key.mode == "live"
    assert test.raw_key.startswith("aq_test_")
    assert test.api_key.mode == "test"
    assert test.api_key.prefix == test.raw_key[: len("aq_test_") + tokens.VISIBLE_PREFIX_CHARS]
    with pytest.raises(ValueError):
        services.create_api_key(team, mode="staging")


def test_keys_issued_before_modes_keep_working(team: Team) -> None:
    raw = "aq_" + "L" * 43  # the format before keys carried a mode
    ApiKey.objects.create(team=team, prefix=raw[:11], digest=tokens.digest(raw))
    response = api(raw).post("/v1/tasks", {"targetUrl": TARGET, "delay": 60}, format="json")
    assert response.status_code == 201
    assert response.json()["task"]["sandbox"] is False


def test_the_command_takes_a_mode(db: Any) -> None:
    out = io.StringIO()
    call_command("asyncqueue_create_api_key", "--team", "t", "--mode", "test", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    assert raw.startswith("aq_test_")
    assert "test API key" in out.getvalue()
    assert ApiKey.objects.get(digest=tokens.digest(raw)).mode == "test"
    out = io.StringIO()
    call_command("asyncqueue_create_api_key", "--team", "t", stdout=out)
    assert out.getvalue().strip().splitlines()[-1].startswith("aq_live_")
    with pytest.raises(CommandError):
        call_command("asyncqueue_create_api_key", "--team", "t", "--mode", "prod")


@pytest.fixture
def admin_client(db: Any) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.test", "pw")
    c = Client()
    c.force_login(user)
    return c


def test_the_admin_issues_test_keys_and_filters_sandbox_tasks(
    admin_client: Client, team: Team
) -> None:
    response = admin_client.post(
        "/admin/asyncqueue/apikey/add/", {"team": team.pk, "name": "qa", "mode": "test"}
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="qa")
    assert key.mode == "test"
    assert key.prefix.startswith("aq_test_")
    assert (
        admin_client.get("/admin/asyncqueue/apikey/?mode__exact=test").context["cl"].result_count
        == 1
    )

    sandbox = services.create_task(team, TaskSpec(target_url=TARGET), sandbox=True).task
    live = services.create_task(team, TaskSpec(target_url=TARGET)).task
    listed = admin_client.get("/admin/asyncqueue/task/?sandbox__exact=1").context["cl"]
    assert [t.pk for t in listed.result_list] == [sandbox.pk]
    listed = admin_client.get("/admin/asyncqueue/task/?sandbox__exact=0").context["cl"]
    assert [t.pk for t in listed.result_list] == [live.pk]
    page = admin_client.get(f"/admin/asyncqueue/task/{sandbox.pk}/change/").content.decode()
    assert "Sandbox" in page


# --------------------------------------------------------------------------- sandbox tasks


def test_a_test_keys_tasks_are_sandbox_tasks(client: APIClient, test_client: APIClient) -> None:
    body = {"targetUrl": TARGET, "delay": 60}
    sandbox = test_client.post("/v1/tasks", body, format="json").json()["task"]
    live = client.post("/v1/tasks", body, format="json").json()["task"]
    assert sandbox["sandbox"] is True
    assert live["sandbox"] is False
    assert Task.objects.get(pk=sandbox["id"]).sandbox
    assert client.get(f"/v1/tasks/{sandbox['id']}").json()["task"]["sandbox"] is True


def test_the_task_list_filters_on_sandbox(client: APIClient, test_client: APIClient) -> None:
    body = {"targetUrl": TARGET, "delay": 60}
    sandbox = test_client.post("/v1/tasks", body, format="json").json()["task"]["id"]
    live = client.post("/v1/tasks", body, format="json").json()["task"]["id"]
    for query, ids in (("true", [sandbox]), ("false", [live]), ("", [live, sandbox])):
        url = "/v1/tasks" + (f"?sandbox={query}" if query else "")
        assert [t["id"] for t in client.get(url).json()["tasks"]] == ids
    answer = client.get("/v1/tasks?sandbox=yes")
    assert answer.status_code == 400
    assert "sandbox" in answer.json()["error"]


def test_a_sandbox_task_completes_with_the_sandbox_result(team: Team) -> None:
    task = services.create_task(team, TaskSpec(target_url=TARGET), sandbox=True).task
    assert execute_task(str(task.pk)) == "completed"
    task.refresh_from_db()
    assert task.result == SANDBOX_RESULT
    (attempt,) = Attempt.objects.filter(task=task)
    assert (attempt.status_code, attempt.outcome, attempt.error) == (200, "succeeded", "")


def test_a_waiting_sandbox_task_waits_for_its_signal(team: Team) -> None:
    created = services.create_task(
        team, TaskSpec(target_url=TARGET, wait_for_signal=True), sandbox=True
    )
    assert created.signal_token is not None
    assert execute_task(str(created.task.pk)) == "waiting"
    outcome = services.signal_task(created.signal_token, "completed", result={"ok": 1})
    assert outcome.task.status == "completed"
    assert outcome.task.result == {"ok": 1}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_sandbox_tasks_never_reach_the_target_and_webhooks_fire(
    celery_worker: Worker, httpserver: HTTPServer
) -> None:
    team = services.get_or_create_team("sandbox-e2e")[0]
    c = api(services.create_api_key(team, mode="test").raw_key)
    httpserver.expect_request("/hook").respond_with_data("ok")
    target, hook = httpserver.url_for("/target"), httpserver.url_for("/hook")
    done = c.post("/v1/tasks", {"targetUrl": target, "onCompleteUrl": hook}, format="json")
    waits = c.post(
        "/v1/tasks",
        {"targetUrl": target, "onCompleteUrl": hook, "waitForSignal": True, "maxWaitTime": 1},
        format="json",
    )
    done_id, wait_id = done.json()["task"]["id"], waits.json()["task"]["id"]

    wait_for(lambda: Task.objects.filter(pk=done_id, status="completed").exists())
    wait_for(lambda: Task.objects.filter(pk=wait_id, status="timeout").exists())
    wait_for(
        lambda: (
            WebhookDelivery.objects.filter(
                task_id__in=[done_id, wait_id], status="delivered"
            ).count()
            == 2
        )
    )
    assert c.get(f"/v1/tasks/{done_id}").json()["task"]["result"] == SANDBOX_RESULT
    assert {r.path for r, _ in httpserver.log} == {"/hook"}  # the target never saw a request


def test_a_test_key_changes_only_sandbox_tasks(
    client: APIClient, test_client: APIClient, team: Team
) -> None:
    """A test key reads the team's live tasks but never cancels or retries one (a retry would
    make a real call); its own sandbox tasks it cancels and retries. Queues hold live tasks
    too: a test key lists them and does not pause or resume them."""
    later = timezone.now() + timedelta(minutes=5)
    live = services.create_task(team, TaskSpec(target_url=TARGET, delay_until=later)).task
    failed = services.create_task(team, TaskSpec(target_url=TARGET)).task
    Task.objects.filter(pk=failed.pk).update(status="failed", error="boom")
    for answer in (
        test_client.post(f"/v1/tasks/{live.pk}/cancel"),
        test_client.delete(f"/v1/tasks/{live.pk}"),
        test_client.post(f"/v1/tasks/{failed.pk}/retry"),
        test_client.post("/v1/queues/default/pause"),
        test_client.post("/v1/queues/default/resume"),
        test_client.delete(f"/v1/tokens/{services.create_token(team, 'api', 's3cret').pk}"),
    ):
        assert answer.status_code == 403, answer.json()
        assert answer.json()["code"] == "test_key_cannot_change_live"
    assert Task.objects.get(pk=live.pk).status == "delayed"
    assert Task.objects.get(pk=failed.pk).status == "failed"
    assert test_client.get(f"/v1/tasks/{live.pk}").status_code == 200
    assert test_client.get("/v1/queues").status_code == 200
    own = test_client.post("/v1/tasks", {"targetUrl": TARGET, "delay": 60}, format="json")
    own_id = own.json()["task"]["id"]
    assert test_client.post(f"/v1/tasks/{own_id}/cancel").json()["task"]["status"] == "cancelled"
    assert client.post(f"/v1/tasks/{live.pk}/cancel").status_code == 200  # a live key may
