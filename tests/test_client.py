"""The Python client against a live server (pytest-django's ``live_server``, real HTTP).

Tasks created here use ``delay`` (an hour): no message is sent, so a Celery worker that other
tests may have started never runs them and their status stays what the test makes it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from asyncqueue_django import services
from asyncqueue_django.client import (
    AsyncQueueClient,
    AsyncQueueError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
    ValidationError,
    WaitTimeout,
    error_from_response,
)
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import Task as TaskRow
from asyncqueue_django.models import Team

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
TARGET = "http://127.0.0.1:9/hook"
LATER = 3600  # `delay` of every task created here


@pytest.fixture(autouse=True)
def _fresh_throttle_cache() -> None:
    cache.clear()


@pytest.fixture(scope="module")
def live_server() -> Iterator[LiveServer]:
    """pytest-django's live server, for this module, started with ``STATIC_URL`` set: the
    static-files wrapper Django puts around a live server reads it when the server thread
    starts, and the test settings leave it unset (every request would then fail)."""
    with override_settings(STATIC_URL="/static/"):
        server = LiveServer("localhost")
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def base_url(live_server: LiveServer) -> str:
    return str(live_server.url)


@pytest.fixture
def aq(base_url: str, api_key: str) -> Iterator[AsyncQueueClient]:
    with AsyncQueueClient(base_url, api_key, timeout=10) as client:
        yield client


def create(aq: AsyncQueueClient, **fields: Any) -> dict[str, Any]:
    fields.setdefault("targetUrl", TARGET)
    fields.setdefault("delay", LATER)
    task: dict[str, Any] = dict(aq.tasks.create(**fields)["task"])
    return task


def run_callback(task_id: str, status_code: int) -> None:
    """Play the worker: claim the (delayed) task and record one attempt's outcome."""
    claimed = services.claim_task(task_id, "w", now=timezone.now() + timedelta(seconds=LATER))
    assert claimed is not None
    services.finish_attempt(claimed, CallResult(status_code=status_code, duration_ms=3), worker="w")


def waiting_task(aq: AsyncQueueClient) -> tuple[str, str]:
    created = aq.tasks.create(targetUrl=TARGET, delay=LATER, waitForSignal=True)
    task_id, token = created["task"]["id"], created["signalToken"]
    run_callback(task_id, 200)
    assert TaskRow.objects.get(pk=task_id).status == "waiting"
    return task_id, token


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append({"method": method, "url": url, **kwargs})
        return super().request(method, url, *args, **kwargs)


# --------------------------------------------------------------------------- importability


def test_client_imports_without_django() -> None:
    code = (
        "import sys, asyncqueue_django.client as c\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'django', 'rest_framework', 'celery', 'kombu'})\n"
        "assert not bad, bad\n"
        "assert c.AsyncQueueClient('http://x').tasks is not None\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd="/", timeout=60)


# --------------------------------------------------------------------------- tasks


def test_create_returns_the_task(aq: AsyncQueueClient, team: Team) -> None:
    created = aq.tasks.create(
        targetUrl=TARGET,
        delay=LATER,
        payload={"videoId": "v1"},
        queue="high",
        priority=8,
        metadata={"customer": "c1"},
    )
    assert "signalToken" not in created
    task = created["task"]
    assert task["status"] == "delayed"
    assert task["payload"] == {"videoId": "v1"}
    assert (task["queue"], task["priority"], task["metadata"]) == ("high", 8, {"customer": "c1"})
    row = TaskRow.objects.get(pk=task["id"])
    assert row.team == team


def test_create_accepts_a_mapping_and_aliases(aq: AsyncQueueClient) -> None:
    created = aq.tasks.create({"callbackUrl": TARGET, "max_retries": 0}, delay=LATER)
    assert created["task"]["targetUrl"] == TARGET
    assert created["task"]["maxRetries"] == 0


def test_create_waiting_for_a_signal_returns_the_token(aq: AsyncQueueClient) -> None:
    created = aq.tasks.create(targetUrl=TARGET, delay=LATER, waitForSignal=True)
    assert len(created["signalToken"]) == 64
    assert created["task"]["waitForSignal"] is True


def test_idempotency_key_is_sent_as_the_header(aq: AsyncQueueClient) -> None:
    first = aq.tasks.create(targetUrl=TARGET, delay=LATER, idempotency_key="order-1")
    replay = aq.tasks.create(targetUrl=TARGET, delay=LATER, idempotency_key="order-1")
    assert replay["task"]["id"] == first["task"]["id"]
    assert first["task"]["idempotencyKey"] == "order-1"
    assert TaskRow.objects.count() == 1
    with pytest.raises(ConflictError) as excinfo:
        aq.tasks.create(targetUrl=TARGET, delay=LATER + 1, idempotency_key="order-1")
    assert excinfo.value.code == "idempotency_conflict"
    assert excinfo.value.status is None
    assert excinfo.value.http_status == 409


def test_get_includes_attempts(aq: AsyncQueueClient) -> None:
    task = create(aq, maxRetries=0)
    run_callback(task["id"], 400)
    got = aq.tasks.get(task["id"])
    assert got["id"] == task["id"]
    assert got["status"] == "failed"
    assert [(a["number"], a["statusCode"]) for a in got["attempts"]] == [(1, 400)]
    assert aq.tasks.get(uuid.UUID(task["id"]))["id"] == task["id"]


def test_list_filters_and_paginates(aq: AsyncQueueClient) -> None:
    ids = [create(aq)["id"], create(aq, queue="high")["id"], create(aq)["id"]]
    aq.tasks.cancel(ids[0])
    page = aq.tasks.list(limit=2)
    assert [t["id"] for t in page["tasks"]] == [ids[2], ids[1]]
    assert page["pagination"] == {"total": 3, "limit": 2, "offset": 0, "hasMore": True}
    assert [t["id"] for t in aq.tasks.list(limit=2, offset=2)["tasks"]] == [ids[0]]
    assert [t["id"] for t in aq.tasks.list(status="cancelled")["tasks"]] == [ids[0]]
    assert aq.tasks.list(status=["cancelled", "delayed"])["pagination"]["total"] == 3
    assert [t["id"] for t in aq.tasks.list(queue="high")["tasks"]] == [ids[1]]
    assert aq.tasks.list(wait_for_signal=True)["pagination"]["total"] == 0
    assert aq.tasks.list(sandbox=False)["pagination"]["total"] == 3
    assert aq.tasks.list(sandbox=True)["pagination"]["total"] == 0
    assert aq.tasks.list()["pagination"]["limit"] == 20


def test_cancel(aq: AsyncQueueClient) -> None:
    task = create(aq)
    cancelled = aq.tasks.cancel(task["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["completedAt"] is not None


def test_retry_a_failed_task(aq: AsyncQueueClient) -> None:
    task = create(aq, maxRetries=0)
    run_callback(task["id"], 400)
    retried = aq.tasks.retry(task["id"])
    assert retried["status"] == "pending"
    assert retried["retryCount"] == 0


# --------------------------------------------------------------------------- signals


def test_signal_completes_a_waiting_task(aq: AsyncQueueClient) -> None:
    task_id, token = waiting_task(aq)
    task = aq.signals.send(token, "completed", result={"paymentId": "pi_1"})
    assert task["id"] == task_id
    assert task["status"] == "completed"
    assert task["result"] == {"paymentId": "pi_1"}


def test_signal_fails_a_waiting_task(aq: AsyncQueueClient) -> None:
    _, token = waiting_task(aq)
    task = aq.signals.send(token, "failed", error="card declined")
    assert (task["status"], task["error"]) == ("failed", "card declined")


def test_signals_need_no_api_key(base_url: str, aq: AsyncQueueClient) -> None:
    _, token = waiting_task(aq)
    session = RecordingSession()
    with AsyncQueueClient(base_url, session=session) as anonymous:
        assert anonymous.signals.send(token, "completed")["status"] == "completed"
    assert "Authorization" not in session.calls[0]["headers"]


def test_api_key_is_not_sent_with_signals(aq: AsyncQueueClient, base_url: str) -> None:
    _, token = waiting_task(aq)
    session = RecordingSession()
    with AsyncQueueClient(base_url, "aq_some_key", session=session) as client:
        client.signals.heartbeat(token, 60)
    assert "Authorization" not in session.calls[0]["headers"]


def test_early_signal_is_recorded(aq: AsyncQueueClient) -> None:
    created = aq.tasks.create(targetUrl=TARGET, delay=LATER, waitForSignal=True)
    task = aq.signals.send(created["signalToken"], "completed", result=1)
    assert task["status"] == "delayed"
    assert task["earlySignal"] == {"status": "completed", "result": 1, "error": None}


def test_heartbeat_extends_the_deadline(aq: AsyncQueueClient) -> None:
    task_id, token = waiting_task(aq)
    before = TaskRow.objects.get(pk=task_id).wait_deadline
    assert before is not None
    extend_by = 2 * 86_400
    task = aq.signals.heartbeat(token, extend_by)
    after = TaskRow.objects.get(pk=task_id).wait_deadline
    assert after is not None
    assert after > before
    assert task["waitDeadline"] is not None
    assert abs((after - timezone.now()).total_seconds() - extend_by) < 60


# --------------------------------------------------------------------------- wait


def test_wait_returns_a_finished_task_at_once(aq: AsyncQueueClient) -> None:
    task = create(aq)
    aq.tasks.cancel(task["id"])
    started = time.monotonic()
    assert aq.tasks.wait(task["id"], timeout=10)["status"] == "cancelled"
    assert time.monotonic() - started < 2


def test_wait_times_out_with_the_last_seen_task(aq: AsyncQueueClient) -> None:
    task = create(aq)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as excinfo:
        aq.tasks.wait(task["id"], timeout=1.0, poll=0.2)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5
    assert excinfo.value.task["status"] == "delayed"
    assert isinstance(excinfo.value, TimeoutError)
    assert isinstance(excinfo.value, AsyncQueueError)
    assert excinfo.value.code == "wait_timeout"


def test_wait_returns_when_a_signal_arrives(aq: AsyncQueueClient, base_url: str) -> None:
    task_id, token = waiting_task(aq)

    def send() -> None:
        with AsyncQueueClient(base_url) as other:
            other.signals.send(token, "completed", result="ok")

    timer = threading.Timer(0.5, send)
    timer.start()
    try:
        task = aq.tasks.wait(task_id, timeout=15, poll=0.1)
    finally:
        timer.join()
    assert (task["status"], task["result"]) == ("completed", "ok")


def test_wait_until_a_non_terminal_status(aq: AsyncQueueClient) -> None:
    task_id, _ = waiting_task(aq)
    assert aq.tasks.wait(task_id, timeout=5, until={"waiting"})["status"] == "waiting"


def test_wait_long_polls_at_most_25_seconds(base_url: str, api_key: str) -> None:
    session = RecordingSession()
    with AsyncQueueClient(base_url, api_key, timeout=7, session=session) as client:
        task = create(client)
        client.tasks.cancel(task["id"])
        session.calls.clear()
        client.tasks.wait(task["id"], timeout=100)
        client.tasks.wait(task["id"], timeout=3.5)
        client.tasks.wait(task["id"], timeout=0.5)
    holds = [call["params"] and call["params"].get("wait") for call in session.calls]
    assert holds == [25, 3, None]
    # The read timeout covers the hold.
    assert [call["timeout"] for call in session.calls] == [32, 10, 7]


def test_wait_polls_a_server_that_ignores_the_wait_parameter(httpserver: HTTPServer) -> None:
    """An older or proxied server that answers ``?wait=`` at once: the loop polls every
    ``poll`` seconds, it does not spin."""
    task_id = str(uuid.uuid4())
    httpserver.expect_request(f"/v1/tasks/{task_id}").respond_with_json(
        {"task": {"id": task_id, "status": "pending"}}
    )
    session = RecordingSession()
    client = AsyncQueueClient(httpserver.url_for(""), "aq_x", session=session)
    with client, pytest.raises(WaitTimeout):
        client.tasks.wait(task_id, timeout=1.2, poll=0.5)
    assert 2 <= len(session.calls) <= 4


def test_get_refuses_a_long_poll_over_25_seconds(aq: AsyncQueueClient) -> None:
    with pytest.raises(ValueError, match="wait must be between 0 and 25"):
        aq.tasks.get(uuid.uuid4(), wait=26)


# --------------------------------------------------------------------------- errors


def test_wrong_api_key_is_an_authentication_error(base_url: str, team: Team) -> None:
    with AsyncQueueClient(base_url, "aq_wrong") as client, pytest.raises(AuthenticationError) as e:
        client.tasks.list()
    assert (e.value.http_status, e.value.code) == (401, "authentication_failed")
    assert e.value.error == "Invalid or revoked API key"
    assert str(e.value) == "HTTP 401 authentication_failed: Invalid or revoked API key"


def test_missing_api_key_is_an_authentication_error(base_url: str, team: Team) -> None:
    with AsyncQueueClient(base_url) as client, pytest.raises(AuthenticationError) as excinfo:
        client.tasks.create(targetUrl=TARGET)
    assert excinfo.value.error.startswith("API key required: send it as")


def test_revoked_api_key_is_an_authentication_error(base_url: str, team: Team) -> None:
    issued = services.create_api_key(team)
    with AsyncQueueClient(base_url, issued.raw_key) as client:
        client.tasks.list()
        services.revoke_api_key(issued.api_key)
        with pytest.raises(AuthenticationError):
            client.tasks.list()


def test_unknown_task_is_not_found(aq: AsyncQueueClient) -> None:
    for task_id in (uuid.uuid4(), "not-a-uuid", "../signals/x"):
        with pytest.raises(NotFoundError) as excinfo:
            aq.tasks.get(task_id)
        assert (excinfo.value.http_status, excinfo.value.code) == (404, "not_found")


def test_another_teams_task_is_not_found(aq: AsyncQueueClient, base_url: str) -> None:
    other = services.create_api_key(services.get_or_create_team("other")[0]).raw_key
    task = create(aq)
    with AsyncQueueClient(base_url, other) as client, pytest.raises(NotFoundError):
        client.tasks.cancel(task["id"])


def test_unknown_signal_token_is_not_found(aq: AsyncQueueClient) -> None:
    with pytest.raises(NotFoundError) as excinfo:
        aq.signals.send("0" * 64, "completed")
    assert excinfo.value.error == "Unknown signal token"


def test_conflicts_name_the_status(aq: AsyncQueueClient) -> None:
    task = create(aq)
    with pytest.raises(ConflictError) as excinfo:
        aq.tasks.retry(task["id"])
    assert (excinfo.value.status, excinfo.value.code) == ("delayed", "invalid_status")
    aq.tasks.cancel(task["id"])
    with pytest.raises(ConflictError) as excinfo:
        aq.tasks.cancel(task["id"])
    assert excinfo.value.status == "cancelled"
    assert excinfo.value.error == "Cannot cancel this task: it was cancelled"


def test_signal_to_a_finished_task_is_a_conflict(aq: AsyncQueueClient) -> None:
    _, token = waiting_task(aq)
    aq.signals.send(token, "completed")
    with pytest.raises(ConflictError) as excinfo:
        aq.signals.send(token, "failed")
    assert excinfo.value.status == "completed"
    with pytest.raises(ConflictError) as excinfo:
        aq.signals.heartbeat(token, 60)
    assert excinfo.value.status == "completed"


def test_invalid_fields_are_a_validation_error(aq: AsyncQueueClient) -> None:
    with pytest.raises(ValidationError) as excinfo:
        aq.tasks.create(targetUrl="ftp://example.com/", priority=11, target_url="x")
    error = excinfo.value
    assert (error.http_status, error.code) == (400, "validation_error")
    assert set(error.fields) == {"target_url"}  # unknown fields are reported first
    with pytest.raises(ValidationError) as excinfo:
        aq.tasks.create(targetUrl="ftp://example.com/", priority=11)
    assert set(excinfo.value.fields) == {"targetUrl", "priority"}
    assert excinfo.value.error.startswith("Invalid request: ")


def test_invalid_signal_is_a_validation_error(aq: AsyncQueueClient) -> None:
    _, token = waiting_task(aq)
    with pytest.raises(ValidationError) as excinfo:
        aq.signals.send(token, "done")  # type: ignore[arg-type]
    assert "status" in excinfo.value.fields
    with pytest.raises(ValidationError):
        aq.signals.heartbeat(token, 0)


def test_invalid_query_is_a_validation_error(aq: AsyncQueueClient) -> None:
    with pytest.raises(ValidationError) as excinfo:
        aq.tasks.list(limit=500)
    assert set(excinfo.value.fields) == {"limit"}
    with pytest.raises(ValidationError) as excinfo:
        aq.tasks.list(status="finished")
    assert set(excinfo.value.fields) == {"status"}


def test_oversized_request_is_a_validation_error_413(aq: AsyncQueueClient) -> None:
    small = {**settings.ASYNCQUEUE, "MAX_REQUEST_BYTES": 1024}
    with override_settings(ASYNCQUEUE=small), pytest.raises(ValidationError) as excinfo:
        aq.tasks.create(targetUrl=TARGET, payload="x" * 2000)
    assert (excinfo.value.http_status, excinfo.value.code) == (413, "payload_too_large")


def test_non_json_request_maps_to_a_validation_error_415(base_url: str, api_key: str) -> None:
    response = requests.post(
        f"{base_url}/v1/tasks",
        data="targetUrl=x",
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "text/plain"},
        timeout=10,
    )
    error = error_from_response(response)
    assert type(error) is ValidationError
    assert (error.http_status, error.code) == (415, "unsupported_media_type")


def test_rate_limit_is_a_rate_limit_error_with_retry_after(aq: AsyncQueueClient) -> None:
    with override_settings(ASYNCQUEUE={**settings.ASYNCQUEUE, "SIGNAL_RATE_LIMIT": "2/min"}):
        for _ in range(2):
            with pytest.raises(NotFoundError):
                aq.signals.send("0" * 64, "completed")
        with pytest.raises(RateLimitError) as excinfo:
            aq.signals.send("0" * 64, "completed")
    assert excinfo.value.http_status == 429
    assert excinfo.value.code == "rate_limited"
    assert excinfo.value.retry_after is not None
    assert 0 < excinfo.value.retry_after <= 60


# ---------------------------------------------- errors a proxy or the network may produce


def test_5xx_is_a_server_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/tasks").respond_with_json(
        {"error": "database unavailable", "code": "unavailable"}, status=503
    )
    httpserver.expect_request("/v1/tasks/x").respond_with_data(
        "<html><body>Bad Gateway</body></html>", status=502, content_type="text/html"
    )
    with AsyncQueueClient(httpserver.url_for("/"), "k") as client:
        with pytest.raises(ServerError) as excinfo:
            client.tasks.list()
        assert (excinfo.value.http_status, excinfo.value.code) == (503, "unavailable")
        assert excinfo.value.error == "database unavailable"
        with pytest.raises(ServerError) as excinfo:
            client.tasks.get("x")
    assert excinfo.value.error == "HTTP 502 BAD GATEWAY: <html><body>Bad Gateway</body></html>"
    assert excinfo.value.code is None


def test_retry_after_as_an_http_date(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/tasks").respond_with_json(
        {"error": "slow down"}, status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    with (
        AsyncQueueClient(httpserver.url_for("/"), "k") as client,
        pytest.raises(RateLimitError) as e,
    ):
        client.tasks.list()
    assert e.value.retry_after == 0.0


def test_other_statuses_are_the_base_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/tasks").respond_with_json({"error": "nope"}, status=403)
    with (
        AsyncQueueClient(httpserver.url_for("/"), "k") as client,
        pytest.raises(AsyncQueueError) as e,
    ):
        client.tasks.list()
    assert type(e.value) is AsyncQueueError
    assert e.value.http_status == 403


def test_non_json_success_and_redirects_are_errors(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/tasks").respond_with_data("ok", status=200)
    httpserver.expect_request("/v1/tasks/r/cancel").respond_with_data(
        "", status=301, headers={"Location": "http://elsewhere/"}
    )
    with AsyncQueueClient(httpserver.url_for("/"), "k") as client:
        with pytest.raises(AsyncQueueError) as excinfo:
            client.tasks.list()
        assert excinfo.value.code == "invalid_response"
        with pytest.raises(AsyncQueueError) as excinfo:
            client.tasks.cancel("r")
        assert excinfo.value.code == "unexpected_redirect"
        assert excinfo.value.http_status == 301


def test_connection_refused_is_a_transport_error() -> None:
    token = "f" * 64
    with AsyncQueueClient(f"http://127.0.0.1:{closed_port()}", "aq_secret_key") as client:
        with pytest.raises(TransportError) as excinfo:
            client.signals.send(token, "completed")
        assert excinfo.value.http_status is None
        assert excinfo.value.code == "transport_error"
        assert token not in str(excinfo.value)
        assert "<token>" in str(excinfo.value)
        assert excinfo.value.__cause__ is None
        with pytest.raises(TransportError):
            client.tasks.list()


def test_read_timeout_is_a_transport_error(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.5)
        return Response(json.dumps({"tasks": []}), content_type="application/json")

    httpserver.expect_request("/v1/tasks").respond_with_handler(slow)
    client = AsyncQueueClient(httpserver.url_for("/"), "k", timeout=0.3)
    with client, pytest.raises(TransportError) as excinfo:
        client.tasks.list()
    assert "timed out" in str(excinfo.value)


# --------------------------------------------------------------------------- construction


def test_base_url_forms(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/tasks").respond_with_json({"tasks": [], "pagination": {}})
    for url in (httpserver.url_for("/"), httpserver.url_for("/v1"), httpserver.url_for("/v1/")):
        with AsyncQueueClient(url, "k") as client:
            assert client.tasks.list()["tasks"] == []
    request = httpserver.log[0][0]
    assert request.headers["Authorization"] == "Bearer k"
    assert request.headers["User-Agent"].startswith("asyncqueue-django-client/")


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("ftp://x",), {}), (("",), {}), (("http://x",), {"timeout": 0})],
)
def test_bad_construction(args: tuple[str], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AsyncQueueClient(*args, **kwargs)


def test_repr_hides_the_key() -> None:
    client = AsyncQueueClient("http://x/", "aq_topsecret")
    assert "topsecret" not in repr(client)
    client.close()


def test_a_given_session_is_not_closed(base_url: str, api_key: str) -> None:
    session = RecordingSession()
    with AsyncQueueClient(base_url, api_key, session=session) as client:
        client.tasks.list()
    # Still usable: the caller owns it.
    assert session.get(f"{base_url}/v1/tasks", timeout=5).status_code == 401
    session.close()


def test_empty_ids_are_refused(aq: AsyncQueueClient) -> None:
    with pytest.raises(ValueError, match="task_id must not be empty"):
        aq.tasks.get("")
    with pytest.raises(ValueError, match="token must not be empty"):
        aq.signals.send("", "completed")


# --------------------------------------------------------------------------- batch and vault


def test_create_batch(aq: AsyncQueueClient) -> None:
    created = aq.tasks.create_batch(
        [
            {"targetUrl": TARGET, "delay": LATER, "payload": {"n": 0}},
            {"targetUrl": TARGET, "delay": LATER, "waitForSignal": True, "idempotencyKey": "b1"},
        ]
    )
    entries = created["tasks"]
    assert [e["task"]["status"] for e in entries] == ["delayed", "delayed"]
    assert "signalToken" in entries[1]
    assert TaskRow.objects.count() == 2
    with pytest.raises(ValidationError) as caught:
        aq.tasks.create_batch([{"targetUrl": TARGET}, {"payload": 1}])
    assert "tasks[1].targetUrl" in caught.value.fields
    assert TaskRow.objects.count() == 2


def test_tokens(aq: AsyncQueueClient) -> None:
    secret = "sk_client_secret_value_123"
    token = aq.tokens.create("stripe", secret)
    assert token["id"].startswith("tok_")
    assert aq.tokens.list() == [token]
    task = create(aq, headers={"Authorization": token["id"]})
    assert task["headers"]["Authorization"] in (token["id"], "[redacted]")
    revoked = aq.tokens.revoke(token["id"])
    assert revoked["id"] == token["id"]
    assert revoked["revokedAt"]
    assert aq.tokens.list() == []
    with pytest.raises(NotFoundError):
        aq.tokens.revoke("tok_unknown")
    with pytest.raises(ValidationError) as caught:
        aq.tokens.create("bad", secret + "\n")
    assert secret not in str(caught.value)


def test_providers_lists_the_templates_without_a_key(base_url: str) -> None:
    with AsyncQueueClient(base_url) as anonymous:
        listed = {p["id"]: p for p in anonymous.providers.list()}
    assert listed["replicate"]["pollConfig"]["statusPath"] == "status"


def test_create_with_the_placeholder_returns_the_callback_url(aq: AsyncQueueClient) -> None:
    created = aq.tasks.create(
        {"targetUrl": "https://example.com/submit", "body": "{asyncqueue_callback_url}"}
    )
    assert created["callbackUrl"].endswith("/v1/callbacks/" + created["task"]["callbackId"])


def test_schedules(aq: AsyncQueueClient) -> None:
    schedule = aq.schedules.create(
        "0 9 * * mon-fri", {"targetUrl": TARGET, "payload": {"r": 1}}, timezone="Europe/Paris"
    )
    assert schedule["cron"] == "0 9 * * 1-5"
    assert schedule["timezone"] == "Europe/Paris"
    assert schedule["nextRunAt"]
    assert aq.schedules.list() == [schedule]
    assert aq.schedules.get(schedule["id"]) == schedule
    assert aq.schedules.pause(schedule["id"])["paused"] is True
    assert aq.schedules.resume(schedule["id"])["paused"] is False
    changed = aq.schedules.update(schedule["id"], cron="30 8 * * *", paused=True)
    assert (changed["cron"], changed["paused"]) == ("30 8 * * *", True)
    assert aq.schedules.delete(schedule["id"])["id"] == schedule["id"]
    assert aq.schedules.list() == []
    with pytest.raises(NotFoundError):
        aq.schedules.get(schedule["id"])
    with pytest.raises(ValidationError) as caught:
        aq.schedules.create("61 * * * *", {"targetUrl": TARGET}, timezone="Nowhere/Land")
    assert set(caught.value.fields) == {"cron", "timezone"}
    via_tasks = aq.tasks.create(targetUrl=TARGET, schedule="*/5 * * * *")
    assert via_tasks["schedule"]["cron"] == "*/5 * * * *"  # type: ignore[typeddict-item]


def test_queues_and_flow_control(aq: AsyncQueueClient) -> None:
    task = create(aq, queue="low", flowControl={"key": "partner", "parallelism": 2})
    assert task["flowControl"] == {"key": "partner", "parallelism": 2, "rate": None, "period": None}
    paused = aq.queues.pause("low")
    assert paused["name"] == "low"
    assert paused["paused"] is True
    assert paused["delayed"] == 1
    assert [(q["name"], q["paused"]) for q in aq.queues.list()] == [("low", True)]
    assert aq.queues.resume("low")["paused"] is False
    with pytest.raises(ValidationError) as caught:
        create(aq, flowControl={"key": "partner", "rate": 0})
    assert "flowControl.rate" in caught.value.fields
    with pytest.raises(ValidationError) as caught:
        aq.queues.pause("no such queue")
    assert "name" in caught.value.fields
