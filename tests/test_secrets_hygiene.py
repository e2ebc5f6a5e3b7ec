"""Secrets never stored in plaintext and never logged, over a full run with a real worker: API
keys, signal tokens, webhook secrets and Token Vault values are searched for in every log line
this process and the worker wrote, in a dump of every table, in every API answer and in the
webhook body (a vault value reaches only the target it is meant for)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.apps import apps
from django.test import override_settings
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient

from asyncqueue_django import http, services
from asyncqueue_django.models import Task, Team
from tests.worker import Worker, wait_for


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_no_secret_in_logs_or_tables_over_a_full_run(
    celery_worker: Worker, httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    log_start = len(celery_worker.log())
    team: Team = services.get_or_create_team("hygiene")[0]
    raw_key = services.create_api_key(team, "hygiene").raw_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    httpserver.expect_request("/start").respond_with_data("ok")
    httpserver.expect_request("/hook").respond_with_data("ok")
    vault_value = "vault-secret-value-" + "q" * 24
    stored = client.post("/v1/tokens", {"name": "target", "value": vault_value}, format="json")
    token_id = stored.json()["token"]["id"]
    answers = [stored.content.decode(), client.get("/v1/tokens").content.decode()]

    created = client.post(
        "/v1/tasks",
        {
            "targetUrl": httpserver.url_for("/start"),
            "waitForSignal": True,
            "onCompleteUrl": httpserver.url_for("/hook"),
            "headers": {"Authorization": "Bearer target-secret-xyz", "X-Vault": token_id},
        },
        format="json",
    ).json()
    token = created["signalToken"]
    task_id = created["task"]["id"]
    wait_for(lambda: Task.objects.filter(pk=task_id, status="waiting").exists())
    assert APIClient().post(f"/v1/signals/{token}", {"status": "completed"}, format="json")
    wait_for(lambda: len(httpserver.log) >= 2)
    detail = client.get(f"/v1/tasks/{task_id}")
    assert detail.json()["task"]["headers"] == {"Authorization": "[redacted]", "X-Vault": token_id}
    answers.append(detail.content.decode())
    start = next(r for r, _ in httpserver.log if r.path == "/start")
    hook = next(r for r, _ in httpserver.log if r.path == "/hook")
    assert start.headers["X-Vault"] == vault_value  # the target, and only it, gets the value
    assert vault_value not in hook.get_data(as_text=True)
    answers.append(client.delete(f"/v1/tokens/{token_id}").content.decode())
    assert all(vault_value not in answer for answer in answers)
    assert APIClient().get("/v1/tasks", HTTP_X_API_KEY="aq_wrong").status_code == 401

    team.refresh_from_db()
    secrets = {
        "api key": raw_key,
        "signal token": token,
        "webhook secret": team.webhook_secret,
        "vault value": vault_value,
    }
    logs = "\n".join(r.getMessage() for r in caplog.records) + celery_worker.log()[log_start:]
    for name, secret in secrets.items():
        assert secret not in logs, f"the {name} appears in the logs"

    dump = _dump_all_tables()
    assert raw_key not in dump, "the API key is stored in plaintext"
    assert token not in dump, "the signal token is stored in plaintext"
    assert vault_value not in dump, "a vault value is stored in plaintext"


def _dump_all_tables() -> str:
    parts = []
    for model in apps.get_app_config("asyncqueue").get_models():
        for row in model._default_manager.all().values():
            parts.append(repr(row))
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("url", "resolves_to", "ok"),
    [
        ("https://bücher.example/hook", ["93.184.216.34"], True),
        ("https://xn--bcher-kva.example/hook", ["93.184.216.34"], True),
        ("https://bücher.example/hook", ["10.0.0.7"], False),
        ("https://пример.испытание/", ["192.168.1.1"], False),
    ],
)
def test_unicode_and_idn_hosts(
    client: APIClient, db: Any, url: str, resolves_to: list[str], ok: bool
) -> None:
    previous = http.set_resolver(lambda host, port: resolves_to)
    try:
        with override_settings(ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": False}):
            response = client.post("/v1/tasks", {"targetUrl": url}, format="json")
    finally:
        http.set_resolver(previous)
    if ok:
        assert response.status_code == 201
        assert response.json()["task"]["targetUrl"] == url
    else:
        assert response.status_code == 400
        assert "targetUrl" in response.json()["fields"]
