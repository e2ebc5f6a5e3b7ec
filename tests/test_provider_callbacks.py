"""Provider callback URLs: the ``{asyncqueue_callback_url}`` placeholder, the one-time callback
id, ``POST /v1/callbacks/{callbackId}`` (404/409/202/200/413), early callbacks, and the end to
end flow with a real worker and a local provider."""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import override_settings
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient
from werkzeug import Request, Response

from asyncqueue_django import services, tokens
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import Task, Team, WebhookDelivery
from asyncqueue_django.values import TaskSpec
from tests.settings import ASYNCQUEUE as TEST_SETTINGS
from tests.worker import Worker, wait_for

PLACEHOLDER = "{asyncqueue_callback_url}"


def _path(url: str) -> str:
    return urlsplit(url).path


def _create(client: APIClient, **body: Any) -> Any:
    return client.post(
        "/v1/tasks", {"targetUrl": "http://127.0.0.1:9/submit", **body}, format="json"
    )


@pytest.mark.django_db
def test_create_answers_a_one_time_callback_url_and_stores_only_a_digest(client: APIClient) -> None:
    response = _create(client, payload={"webhook": PLACEHOLDER, "prompt": "a cat"})
    assert response.status_code == 201
    data = response.json()
    callback_id = data["task"]["callbackId"]
    assert re.fullmatch(r"[0-9a-f]{64}", callback_id)
    assert data["callbackUrl"] == f"http://testserver/v1/callbacks/{callback_id}"
    assert data["task"]["waitForSignal"] is True  # the placeholder implies waiting
    assert data["signalToken"]  # it can be signalled too
    task = Task.objects.get(pk=data["task"]["id"])
    assert task.callback_digest == tokens.digest(callback_id)
    assert callback_id not in json.dumps(
        {f.name: str(getattr(task, f.name)) for f in Task._meta.concrete_fields}
    )
    # Shown once: reading the task back never shows the id.
    again = client.get(f"/v1/tasks/{task.pk}").json()["task"]
    assert "callbackId" not in again


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"headers": {"X-Hook": PLACEHOLDER}}, "headers.X-Hook"),
        ({"onCompleteUrl": f"https://example.com/done?u={PLACEHOLDER}"}, "onCompleteUrl"),
    ],
)
def test_placeholder_outside_the_call_is_a_400_naming_the_field(
    client: APIClient, body: dict[str, Any], field: str
) -> None:
    response = _create(client, **body)
    assert response.status_code == 400
    assert field in response.json()["fields"]


@pytest.mark.django_db
def test_placeholder_without_public_base_url_is_refused(client: APIClient) -> None:
    settings = {k: v for k, v in TEST_SETTINGS.items() if k != "PUBLIC_BASE_URL"}
    with override_settings(ASYNCQUEUE=settings):
        response = _create(client, body=f"hook={PLACEHOLDER}")
    assert response.status_code == 503
    assert response.json()["code"] == "callback_url_not_configured"
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_batch_items_carry_their_own_callback_url(client: APIClient) -> None:
    response = client.post(
        "/v1/tasks/batch",
        {
            "tasks": [
                {"targetUrl": "http://127.0.0.1:9/a", "body": PLACEHOLDER},
                {"targetUrl": "http://127.0.0.1:9/b"},
            ]
        },
        format="json",
    )
    assert response.status_code == 201
    first, second = response.json()["tasks"]
    assert first["callbackUrl"].endswith(first["task"]["callbackId"])
    assert "callbackUrl" not in second


def _waiting_task(team: Team, **spec: Any) -> tuple[Task, str]:
    """A task with the placeholder whose call succeeded: waiting; and its callback path."""
    created = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", body=PLACEHOLDER, **spec)
    )
    task = services.claim_task(created.task.pk, "w")
    assert task is not None
    assert services.finish_attempt(task, CallResult(status_code=202), worker="w") == "waiting"
    return Task.objects.get(pk=task.pk), _path(created.callback_url or "")


@pytest.mark.django_db
def test_callback_completes_a_waiting_task_with_the_request_as_result(
    team: Team, anon: APIClient
) -> None:
    task, path = _waiting_task(team, on_complete_url="https://example.com/done")

    def call_back() -> Any:
        return anon.post(
            path,
            data=json.dumps({"video": "https://cdn.example/v.mp4"}),
            content_type="application/json",
            HTTP_AUTHORIZATION="Bearer provider-secret",
            HTTP_X_PROVIDER="fal",
        )

    response = call_back()
    assert response.status_code == 200
    body = response.json()["task"]
    assert body["status"] == "completed"
    result = body["result"]
    assert result["statusCode"] == 200
    assert result["duration"] == 0
    assert result["body"] == {"video": "https://cdn.example/v.mp4"}
    assert result["headers"]["X-Provider"] == "fal"
    assert "provider-secret" not in json.dumps(result)  # secrets redacted
    assert WebhookDelivery.objects.filter(task=task).count() == 1
    # The same call again (a provider's retry) is answered 200; another body is a 409 naming
    # the status.
    assert call_back().status_code == 200
    other = anon.post(path, data="something else", content_type="text/plain")
    assert other.status_code == 409
    assert other.json()["status"] == "completed"
    assert WebhookDelivery.objects.filter(task=task).count() == 1


@pytest.mark.django_db
def test_a_call_of_this_service_to_a_callback_url_stores_no_vault_secret(
    team: Team, anon: APIClient
) -> None:
    """A task whose target is a callback URL (its own placeholder, or another task's URL)
    carries its headers, vault secrets revealed, into the result it completes."""
    from asyncqueue_django import outbound

    waiting, path = _waiting_task(team)
    vault_id = str(services.create_token(team, "key", "vault-secret-value").pk)
    caller = services.create_task(
        team,
        TaskSpec(
            target_url=f"http://testserver{path}",
            headers={"X-Custom": vault_id, "X-Plain": "hello"},
            payload={"a": 1},
        ),
    ).task
    sent, body = outbound.build_callback(caller)
    assert sent["X-Custom"] == "vault-secret-value"  # what the target would get
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in sent.items()}
    meta.pop("HTTP_CONTENT_TYPE")
    response = anon.post(path, data=body, content_type="application/json", **meta)
    assert response.status_code == 200
    stored = Task.objects.get(pk=waiting.pk).result
    assert "vault-secret-value" not in json.dumps(stored)
    assert "X-Custom" not in stored["headers"]
    assert "X-Plain" not in stored["headers"]
    assert stored["headers"]["X-Asyncqueue-Task-Id"] == str(caller.pk)
    assert stored["body"] == {"a": 1}


@pytest.mark.django_db
def test_text_body_is_stored_as_text(team: Team, anon: APIClient) -> None:
    _, path = _waiting_task(team)
    response = anon.post(path, data="job=done", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert response.json()["task"]["result"]["body"] == "job=done"


@pytest.mark.django_db
def test_unknown_or_malformed_callback_id_is_404(anon: APIClient) -> None:
    for callback_id in ("0" * 64, "nothex", "A" * 64):
        response = anon.post(
            f"/v1/callbacks/{callback_id}", data="{}", content_type="application/json"
        )
        assert response.status_code == 404
        assert response.json()["error"] == "Invalid or expired callback ID"


@pytest.mark.django_db
def test_callback_to_a_cancelled_task_is_409_naming_it(team: Team, anon: APIClient) -> None:
    task, path = _waiting_task(team)
    services.cancel_task(team, task.pk)
    response = anon.post(path, data="{}", content_type="application/json")
    assert response.status_code == 409
    assert response.json()["status"] == "cancelled"


@pytest.mark.django_db
def test_oversized_callback_body_is_413(team: Team, anon: APIClient) -> None:
    _, path = _waiting_task(team)
    with override_settings(ASYNCQUEUE={**TEST_SETTINGS, "MAX_REQUEST_BYTES": 1024}):
        response = anon.post(path, data="x" * 2000, content_type="text/plain")
    assert response.status_code == 413
    assert Task.objects.get().status == "waiting"


@pytest.mark.django_db
@pytest.mark.parametrize("phase", ["pending", "processing"])
def test_early_callback_is_202_and_applied_when_the_call_succeeds(
    team: Team, anon: APIClient, phase: str
) -> None:
    created = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", payload={"hook": PLACEHOLDER})
    )
    path = _path(created.callback_url or "")
    if phase == "processing":
        services.claim_task(created.task.pk, "w")
    response = anon.post(path, data='{"done": true}', content_type="application/json")
    assert response.status_code == 202
    assert response.json()["task"]["status"] == phase
    task = (
        services.claim_task(created.task.pk, "w")
        if phase == "pending"
        else Task.objects.get(pk=created.task.pk)
    )
    assert task is not None
    status = services.finish_attempt(task, CallResult(status_code=200), worker="w")
    assert status == "completed"  # straight to the callback's outcome, never waiting
    task.refresh_from_db()
    assert task.result["body"] == {"done": True}


@pytest.mark.django_db
def test_an_error_answer_on_a_live_callback_id_or_signal_token_never_logs_it(
    team: Team, anon: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    task, path = _waiting_task(team)
    callback_id = path.rsplit("/", 1)[1]
    token = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", wait_for_signal=True)
    ).signal_token
    with override_settings(ASYNCQUEUE={**TEST_SETTINGS, "MAX_REQUEST_BYTES": 1024}):
        assert anon.post(path, data="x" * 2000, content_type="text/plain").status_code == 413
    bad = anon.post(f"/v1/signals/{token}", {"status": "maybe"}, format="json")
    assert bad.status_code == 400
    beat = anon.post(f"/v1/signals/{token}/heartbeat", {"extendBy": 0}, format="json")
    assert beat.status_code == 400
    assert Task.objects.get(pk=task.pk).status == "waiting"  # both still live
    logged = caplog.text
    assert callback_id not in logged
    assert str(token) not in logged
    # Still logged, as Django logs every 4xx, with the credential left out.
    assert "Request Entity Too Large: /v1/callbacks/[redacted]" in logged
    assert "Bad Request: /v1/signals/[redacted]/heartbeat" in logged


@pytest.mark.django_db
def test_callback_ids_are_limited_per_ip(team: Team, anon: APIClient) -> None:
    with override_settings(ASYNCQUEUE={**TEST_SETTINGS, "CALLBACK_RATE_LIMIT": "2/min"}):
        codes = [
            anon.post(f"/v1/callbacks/{'0' * 64}", data="{}", content_type="application/json")
            for _ in range(3)
        ]
    assert [r.status_code for r in codes] == [404, 404, 429]


# --------------------------------------------------------------------------------------------
# End to end: a real worker calls a local provider, which later calls the callback URL
# --------------------------------------------------------------------------------------------

e2e = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_provider_receives_the_url_and_its_callback_completes_the_task(
    client: APIClient, anon: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/hooks").respond_with_data("ok")
    httpserver.expect_request("/submit").respond_with_json({"id": "job-1"}, status=201)
    response = client.post(
        "/v1/tasks",
        {
            "targetUrl": httpserver.url_for("/submit") + f"?webhook={PLACEHOLDER}",
            "payload": {"prompt": "a cat", "callback": PLACEHOLDER},
            "onCompleteUrl": httpserver.url_for("/hooks"),
        },
        format="json",
    )
    assert response.status_code == 201
    task_id, callback_url = response.json()["task"]["id"], response.json()["callbackUrl"]
    wait_for(lambda: Task.objects.filter(pk=task_id, status="waiting").exists())
    submit = next(r for r, _ in httpserver.log if r.path == "/submit")
    assert json.loads(submit.get_data())["callback"] == callback_url
    assert parse_qs(urlsplit(submit.url).query)["webhook"] == [callback_url]  # URL-encoded

    done = anon.post(_path(callback_url), data='{"status": "ok"}', content_type="application/json")
    assert done.status_code == 200
    assert done.json()["task"]["result"]["body"] == {"status": "ok"}
    wait_for(lambda: any(r.path == "/hooks" for r, _ in httpserver.log))
    events = [json.loads(r.get_data())["event"] for r, _ in httpserver.log if r.path == "/hooks"]
    assert events == ["task.completed"]
    assert WebhookDelivery.objects.filter(task_id=task_id).count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_callback_arriving_during_the_submit_call_is_applied_when_it_succeeds(
    client: APIClient, anon: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    release = threading.Event()

    def slow_submit(request: Request) -> Response:
        release.wait(20)
        return Response(json.dumps({"id": "job-2"}), 201, content_type="application/json")

    httpserver.expect_request("/submit").respond_with_handler(slow_submit)
    response = client.post(
        "/v1/tasks",
        {"targetUrl": httpserver.url_for("/submit"), "body": PLACEHOLDER},
        format="json",
    )
    task_id, callback_url = response.json()["task"]["id"], response.json()["callbackUrl"]
    wait_for(lambda: Task.objects.filter(pk=task_id, status="processing").exists())
    early = anon.post(_path(callback_url), data='{"fast": 1}', content_type="application/json")
    assert early.status_code == 202
    release.set()
    task = wait_for(lambda: Task.objects.filter(pk=task_id, status="completed").first())
    assert task.result["body"] == {"fast": 1}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_sandbox_task_with_the_placeholder_waits_for_its_callback(
    team: Team, anon: APIClient, celery_worker: Worker
) -> None:
    key = services.create_api_key(team, "sandbox", mode="test").raw_key
    sandbox = APIClient()
    sandbox.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = sandbox.post(
        "/v1/tasks", {"targetUrl": "https://example.com/submit", "body": PLACEHOLDER}, format="json"
    )
    task_id, callback_url = response.json()["task"]["id"], response.json()["callbackUrl"]
    wait_for(lambda: Task.objects.filter(pk=task_id, status="waiting").exists())
    assert (
        anon.post(_path(callback_url), data="{}", content_type="application/json").status_code
        == 200
    )
