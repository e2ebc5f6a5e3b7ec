"""``/v1/tasks`` over HTTP: create, list, get, cancel, retry, auth, bad input.

The test client re-raises any exception a view lets through, so a 500 fails the test that
caused it; every bad input below must come back as a 4xx JSON error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from asyncqueue_django import http, services, tokens
from asyncqueue_django.exceptions import STATUS_PHRASES
from asyncqueue_django.models import Task, Team
from asyncqueue_django.services import TaskSpec

URL = "/v1/tasks"
TARGET = "https://example.com/hook"
DONE = "https://example.com/done"
PUBLIC_IP_TARGET = "http://93.184.216.34/hook"
DAY = 86_400

# The README's task object; more fields may be added.
TASK_FIELDS = {
    "id",
    "status",
    "targetUrl",
    "method",
    "headers",
    "payload",
    "body",
    "timeout",
    "delayUntil",
    "priority",
    "queue",
    "maxRetries",
    "retryBackoff",
    "retryCount",
    "nextAttemptAt",
    "waitForSignal",
    "maxWaitTime",
    "waitDeadline",
    "onCompleteUrl",
    "metadata",
    "result",
    "error",
    "idempotencyKey",
    "createdAt",
    "updatedAt",
    "startedAt",
    "completedAt",
}

# Never part of a task object: secrets and internal bookkeeping.
HIDDEN_FIELDS = {
    "signalToken",
    "signalTokenDigest",
    "signal_token_digest",
    "idempotencyFingerprint",
    "leasedBy",
    "team",
}

pytestmark = pytest.mark.django_db


def assert_task_object(task: dict[str, Any]) -> None:
    assert set(task) >= TASK_FIELDS
    assert not set(task) & HIDDEN_FIELDS


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def aq_settings(**values: Any) -> override_settings:
    """``ASYNCQUEUE`` as in the test settings, plus ``values``."""
    return override_settings(ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": True, **values})


def no_private_targets(**values: Any) -> override_settings:
    return override_settings(ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": False, **values})


def post(client: APIClient, data: Any, path: str = URL, **extra: Any) -> Any:
    return client.post(path, data, format="json", **extra)


def post_raw(
    client: APIClient, body: bytes | str, content_type: str = "application/json", **extra: Any
) -> Any:
    return client.generic("POST", URL, body, content_type=content_type, **extra)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def assert_error(
    response: Any, status: int, code: str, fields: set[str] | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str)
    assert body["error"].strip()
    assert body["code"] == code
    if fields is None:
        assert "fields" not in body
    else:
        assert set(body["fields"]) == fields
        for name in fields:
            assert isinstance(body["fields"][name], str)
            assert body["fields"][name].strip()
            assert name in body["error"]
    return body


def make_task(team: Team, **spec: Any) -> Task:
    spec.setdefault("target_url", TARGET)
    return services.create_task(team, TaskSpec(**spec)).task


def set_status(task: Task, status: str, **fields: Any) -> None:
    """Put a row into ``status`` directly (arrange step), honouring the CheckConstraints."""
    now = timezone.now()
    values: dict[str, Any] = {"status": status}
    if status == "waiting":
        values["wait_deadline"] = now + timedelta(hours=1)
    if status == "processing":
        values["lease_expires_at"] = now + timedelta(minutes=1)
    if status in ("completed", "failed", "timeout", "cancelled"):
        values["completed_at"] = now
    values.update(fields)
    assert Task.objects.filter(pk=task.pk).update(**values) == 1


@pytest.fixture
def other_team(db: Any) -> Team:
    return services.get_or_create_team("globex")[0]


@pytest.fixture
def resolve_to() -> Iterator[Callable[..., list[tuple[str, int]]]]:
    """Make every host name resolve to the given addresses; returns the lookups made."""
    lookups: list[tuple[str, int]] = []
    previous: list[http.Resolver] = []

    def install(*addresses: str, error: OSError | None = None) -> list[tuple[str, int]]:
        def resolver(host: str, port: int) -> list[str]:
            lookups.append((host, port))
            if error is not None:
                raise error
            return list(addresses)

        old = http.set_resolver(resolver)
        if not previous:
            previous.append(old)
        return lookups

    yield install
    if previous:
        http.set_resolver(previous[0])


# --------------------------------------------------------------------------------------------
# Create: every field, defaults, echo
# --------------------------------------------------------------------------------------------


def test_create_with_every_field_echoes_it(client: APIClient, team: Team) -> None:
    before = timezone.now()
    delay_until = (before + timedelta(days=2)).replace(microsecond=123456)
    data = {
        "targetUrl": TARGET,
        "method": "PUT",
        "headers": {"X-Trace": "abc", "Authorization": "Bearer s3cret", "Content-Language": ""},
        "payload": {"order": 42, "items": [1, 2.5, None, True, "é"], "nested": {"a": {}}},
        "timeout": 45,
        "delayUntil": iso(delay_until),
        "maxRetries": 7,
        "retryBackoff": "linear",
        "priority": 9,
        "queue": "video.high",
        "waitForSignal": True,
        "maxWaitTime": 3600,
        "onCompleteUrl": DONE,
        "metadata": {"customer": "c_1", "tags": ["a", "b"]},
        "idempotencyKey": "order-42",
    }
    response = post(client, data)
    after = timezone.now()
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"task", "signalToken"}
    task = body["task"]
    assert_task_object(task)
    assert task["status"] == "delayed"
    assert task["targetUrl"] == TARGET
    assert task["method"] == "PUT"
    # Secret-looking header values are redacted on the way out, kept for the call.
    assert task["headers"] == {
        "X-Trace": "abc",
        "Authorization": "[redacted]",
        "Content-Language": "",
    }
    assert task["payload"] == data["payload"]
    assert task["body"] is None
    assert task["timeout"] == 45
    assert task["delayUntil"] == iso(delay_until)
    assert task["nextAttemptAt"] == iso(delay_until)
    assert task["maxRetries"] == 7
    assert task["retryBackoff"] == "linear"
    assert task["retryCount"] == 0
    assert task["priority"] == 9
    assert task["queue"] == "video.high"
    assert task["waitForSignal"] is True
    assert task["maxWaitTime"] == 3600
    assert task["waitDeadline"] is None
    assert task["onCompleteUrl"] == DONE
    assert task["metadata"] == data["metadata"]
    assert task["result"] is None
    assert task["error"] is None
    assert task["idempotencyKey"] == "order-42"
    assert before <= parse(task["createdAt"]) <= after
    assert task["startedAt"] is None
    assert task["completedAt"] is None
    assert re.fullmatch(r"[0-9a-f]{64}", body["signalToken"])

    row = Task.objects.get(pk=task["id"])
    assert row.team == team
    assert row.pk.version == 7
    assert row.headers == data["headers"]
    assert row.payload == data["payload"]
    assert row.delay_until == delay_until
    assert row.next_attempt_at == delay_until
    assert row.max_retries == 7
    assert row.wait_for_signal is True
    assert row.on_complete_url == DONE
    assert row.idempotency_key == "order-42"


def test_create_with_only_target_uses_the_defaults(client: APIClient) -> None:
    before = timezone.now()
    response = post(client, {"targetUrl": TARGET})
    after = timezone.now()
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"task"}
    task = body["task"]
    assert_task_object(task)
    expected = {
        "status": "pending",
        "targetUrl": TARGET,
        "method": "POST",
        "headers": {},
        "payload": None,
        "body": None,
        "timeout": 30,
        "delayUntil": None,
        "priority": 5,
        "queue": "default",
        "maxRetries": 3,
        "retryBackoff": "exponential",
        "retryCount": 0,
        "waitForSignal": False,
        "maxWaitTime": 86_400,
        "waitDeadline": None,
        "onCompleteUrl": None,
        "metadata": {},
        "result": None,
        "error": None,
        "idempotencyKey": None,
        "startedAt": None,
        "completedAt": None,
    }
    assert {k: task[k] for k in expected} == expected
    assert before <= parse(task["nextAttemptAt"]) <= after
    assert before <= parse(task["createdAt"]) <= after


def test_create_with_body_string(client: APIClient) -> None:
    response = post(client, {"targetUrl": TARGET, "body": "a=1&b=2", "payload": None})
    assert response.status_code == 201, response.content
    task = response.json()["task"]
    assert task["body"] == "a=1&b=2"
    assert task["payload"] is None
    row = Task.objects.get(pk=task["id"])
    assert row.body == "a=1&b=2"
    assert row.payload is None


def test_create_with_empty_body_keeps_it(client: APIClient) -> None:
    response = post(client, {"targetUrl": TARGET, "body": ""})
    assert response.status_code == 201, response.content
    assert response.json()["task"]["body"] == ""


@pytest.mark.parametrize("payload", [0, False, "", [], {}, "text", 1.5, [None]])
def test_falsy_and_scalar_payloads_are_kept(client: APIClient, payload: Any) -> None:
    response = post(client, {"targetUrl": TARGET, "payload": payload})
    assert response.status_code == 201, response.content
    assert response.json()["task"]["payload"] == payload
    assert Task.objects.get(pk=response.json()["task"]["id"]).payload == payload


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "get", "Patch"])
def test_every_method_is_accepted(client: APIClient, method: str) -> None:
    response = post(client, {"targetUrl": TARGET, "method": method})
    assert response.status_code == 201, response.content
    assert response.json()["task"]["method"] == method.upper()


@pytest.mark.parametrize("backoff", ["exponential", "linear", "fixed"])
def test_every_backoff_is_accepted(client: APIClient, backoff: str) -> None:
    response = post(client, {"targetUrl": TARGET, "retryBackoff": backoff})
    assert response.status_code == 201, response.content
    assert response.json()["task"]["retryBackoff"] == backoff


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", 1),
        ("timeout", 300),
        ("priority", 1),
        ("priority", 10),
        ("maxRetries", 0),
        ("maxRetries", 10),
        ("maxWaitTime", 1),
        ("maxWaitTime", 30 * DAY),
    ],
)
def test_bounds_are_inclusive(client: APIClient, field: str, value: int) -> None:
    response = post(client, {"targetUrl": TARGET, field: value})
    assert response.status_code == 201, response.content
    assert response.json()["task"][field] == value


@pytest.mark.parametrize("field", ["timeout", "maxRetries", "maxWaitTime", "delayUntil", "delay"])
def test_null_means_default(client: APIClient, field: str) -> None:
    response = post(client, {"targetUrl": TARGET, field: None})
    assert response.status_code == 201, response.content
    task = response.json()["task"]
    assert (task["timeout"], task["maxRetries"], task["maxWaitTime"]) == (30, 3, 86_400)
    assert task["status"] == "pending"


def test_delay_until_in_the_past_is_due_now(client: APIClient) -> None:
    past = timezone.now() - timedelta(hours=1)
    response = post(client, {"targetUrl": TARGET, "delayUntil": iso(past)})
    assert response.status_code == 201, response.content
    task = response.json()["task"]
    assert task["status"] == "pending"
    assert task["delayUntil"] == iso(past)
    assert parse(task["nextAttemptAt"]) > past


def test_delay_until_with_offset_is_stored_in_utc(client: APIClient) -> None:
    when = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    local = when.astimezone(timezone.get_fixed_timezone(-5 * 60))
    response = post(client, {"targetUrl": TARGET, "delayUntil": local.isoformat()})
    assert response.status_code == 201, response.content
    assert response.json()["task"]["delayUntil"] == iso(when)


def test_wait_for_signal_token_is_shown_once_and_stored_as_digest(client: APIClient) -> None:
    response = post(client, {"targetUrl": TARGET, "waitForSignal": True})
    assert response.status_code == 201, response.content
    token = response.json()["signalToken"]
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    task_id = response.json()["task"]["id"]

    row = Task.objects.filter(pk=task_id).values().get()
    assert row["signal_token_digest"] == tokens.digest(token)
    for column, value in row.items():
        assert token not in json.dumps(value, default=str), column

    detail = client.get(f"{URL}/{task_id}")
    assert detail.status_code == 200
    assert token not in detail.content.decode()
    assert "signalToken" not in detail.json()
    assert token not in client.get(URL).content.decode()


def test_each_waiting_task_gets_its_own_token(client: APIClient) -> None:
    a = post(client, {"targetUrl": TARGET, "waitForSignal": True}).json()["signalToken"]
    b = post(client, {"targetUrl": TARGET, "waitForSignal": True}).json()["signalToken"]
    assert a != b


def test_no_token_without_wait_for_signal(client: APIClient) -> None:
    response = post(client, {"targetUrl": TARGET, "waitForSignal": False})
    assert response.status_code == 201
    assert "signalToken" not in response.json()
    assert Task.objects.get(pk=response.json()["task"]["id"]).signal_token_digest is None


# --------------------------------------------------------------------------------------------
# Aliases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        ({"callbackUrl": TARGET}, "targetUrl", TARGET),
        ({"webhook_url": TARGET}, "targetUrl", TARGET),
        ({"targetUrl": TARGET, "webhookUrl": DONE}, "onCompleteUrl", DONE),
        ({"targetUrl": TARGET, "retries": 7}, "maxRetries", 7),
        ({"targetUrl": TARGET, "max_retries": 7}, "maxRetries", 7),
        ({"targetUrl": TARGET, "max_retries": 0}, "maxRetries", 0),
    ],
    ids=["callbackUrl", "webhook_url", "webhookUrl", "retries", "max_retries", "max_retries-0"],
)
def test_aliases(client: APIClient, data: dict[str, Any], field: str, expected: Any) -> None:
    response = post(client, data)
    assert response.status_code == 201, response.content
    assert response.json()["task"][field] == expected


def test_delay_alias_is_seconds_from_now(client: APIClient) -> None:
    before = timezone.now()
    response = post(client, {"targetUrl": TARGET, "delay": 120})
    after = timezone.now()
    assert response.status_code == 201, response.content
    task = response.json()["task"]
    assert task["status"] == "delayed"
    delay_until = parse(task["delayUntil"])
    assert before + timedelta(seconds=120) <= delay_until <= after + timedelta(seconds=120)
    assert task["nextAttemptAt"] == task["delayUntil"]


def test_delay_zero_is_due_now(client: APIClient) -> None:
    response = post(client, {"targetUrl": TARGET, "delay": 0})
    assert response.status_code == 201, response.content
    assert response.json()["task"]["status"] == "pending"
    assert response.json()["task"]["delayUntil"] is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"callbackUrl": TARGET, "targetUrl": TARGET}, "callbackUrl"),
        ({"webhook_url": TARGET, "targetUrl": TARGET}, "webhook_url"),
        ({"callbackUrl": TARGET, "webhook_url": TARGET}, "webhook_url"),
        ({"targetUrl": TARGET, "webhookUrl": DONE, "onCompleteUrl": DONE}, "webhookUrl"),
        ({"targetUrl": TARGET, "retries": 1, "maxRetries": 1}, "retries"),
        ({"targetUrl": TARGET, "max_retries": 1, "maxRetries": 1}, "max_retries"),
        ({"targetUrl": TARGET, "retries": 1, "max_retries": 1}, "max_retries"),
        ({"targetUrl": TARGET, "delay": 5, "delayUntil": iso(timezone.now())}, "delay"),
    ],
)
def test_alias_and_canonical_together_is_400(
    client: APIClient, data: dict[str, Any], field: str
) -> None:
    body = assert_error(post(client, data), 400, "validation_error", {field})
    # It says to give one of the two, not that the alias is unknown ("did you mean" itself).
    assert body["fields"][field].startswith("Give either"), body
    assert Task.objects.count() == 0


# --------------------------------------------------------------------------------------------
# Bad input: field validation (400 naming the field)
# --------------------------------------------------------------------------------------------

FAR = iso(timezone.now() + timedelta(days=367))

BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("timeout-string", {"timeout": "5"}, "timeout"),
    ("timeout-float", {"timeout": 5.5}, "timeout"),
    ("timeout-bool", {"timeout": True}, "timeout"),
    ("timeout-list", {"timeout": [5]}, "timeout"),
    ("timeout-zero", {"timeout": 0}, "timeout"),
    ("timeout-negative", {"timeout": -1}, "timeout"),
    ("timeout-above-cap", {"timeout": 301}, "timeout"),
    ("timeout-huge", {"timeout": 10**30}, "timeout"),
    ("priority-bool", {"priority": True}, "priority"),
    ("priority-string", {"priority": "5"}, "priority"),
    ("priority-zero", {"priority": 0}, "priority"),
    ("priority-11", {"priority": 11}, "priority"),
    ("priority-null", {"priority": None}, "priority"),
    ("priority-huge", {"priority": -(10**30)}, "priority"),
    ("maxRetries-negative", {"maxRetries": -1}, "maxRetries"),
    ("maxRetries-11", {"maxRetries": 11}, "maxRetries"),
    ("maxRetries-string", {"maxRetries": "3"}, "maxRetries"),
    ("maxRetries-bool", {"maxRetries": False}, "maxRetries"),
    ("retries-alias-11", {"retries": 11}, "maxRetries"),
    ("maxWaitTime-zero", {"maxWaitTime": 0}, "maxWaitTime"),
    ("maxWaitTime-above-cap", {"maxWaitTime": 30 * DAY + 1}, "maxWaitTime"),
    ("maxWaitTime-string", {"maxWaitTime": "60"}, "maxWaitTime"),
    ("delay-negative", {"delay": -1}, "delay"),
    ("delay-string", {"delay": "10"}, "delay"),
    ("delay-float", {"delay": 1.5}, "delay"),
    ("delay-above-max", {"delay": 365 * DAY + 1}, "delay"),
    ("delay-huge", {"delay": 10**30}, "delay"),
    ("delayUntil-garbage", {"delayUntil": "tomorrow"}, "delayUntil"),
    ("delayUntil-int", {"delayUntil": 1_700_000_000}, "delayUntil"),
    ("delayUntil-too-far", {"delayUntil": FAR}, "delayUntil"),
    ("delayUntil-year-9999", {"delayUntil": "9999-12-31T23:59:59-14:00"}, "delayUntil"),
    ("delayUntil-year-1", {"delayUntil": "0001-01-01T00:00:00+14:00"}, "delayUntil"),
    ("delayUntil-object", {"delayUntil": {}}, "delayUntil"),
    ("method-unknown", {"method": "FETCH"}, "method"),
    ("method-head", {"method": "HEAD"}, "method"),
    ("method-connect", {"method": "CONNECT"}, "method"),
    ("method-empty", {"method": ""}, "method"),
    ("method-int", {"method": 5}, "method"),
    ("method-null", {"method": None}, "method"),
    ("retryBackoff-unknown", {"retryBackoff": "random"}, "retryBackoff"),
    ("retryBackoff-int", {"retryBackoff": 1}, "retryBackoff"),
    ("retryBackoff-upper", {"retryBackoff": "LINEAR"}, "retryBackoff"),
    ("waitForSignal-string", {"waitForSignal": "true"}, "waitForSignal"),
    ("waitForSignal-int", {"waitForSignal": 1}, "waitForSignal"),
    ("waitForSignal-null", {"waitForSignal": None}, "waitForSignal"),
    ("queue-space", {"queue": "bad name"}, "queue"),
    ("queue-empty", {"queue": ""}, "queue"),
    ("queue-slash", {"queue": "a/b"}, "queue"),
    ("queue-too-long", {"queue": "q" * 101}, "queue"),
    ("queue-int", {"queue": 5}, "queue"),
    ("queue-non-ascii", {"queue": "vidéo"}, "queue"),
    ("unknown-field", {"foo": 1}, "foo"),
    ("unknown-snake-case", {"max_wait_time": 5}, "max_wait_time"),
    ("unknown-signal-token", {"signalToken": "a" * 64}, "signalToken"),
    ("unknown-status", {"status": "completed"}, "status"),
    ("headers-crlf", {"headers": {"X-A": "a\r\nX-B: c"}}, "headers"),
    ("headers-lf", {"headers": {"X-A": "a\nb"}}, "headers"),
    ("headers-cr", {"headers": {"X-A": "a\rb"}}, "headers"),
    ("headers-host", {"headers": {"Host": "evil.example"}}, "headers"),
    ("headers-host-lower", {"headers": {"host": "evil.example"}}, "headers"),
    ("headers-connection", {"headers": {"Connection": "close"}}, "headers"),
    ("headers-keep-alive", {"headers": {"Keep-Alive": "timeout=5"}}, "headers"),
    ("headers-transfer-encoding", {"headers": {"Transfer-Encoding": "chunked"}}, "headers"),
    ("headers-te", {"headers": {"TE": "trailers"}}, "headers"),
    ("headers-trailer", {"headers": {"Trailer": "X"}}, "headers"),
    ("headers-upgrade", {"headers": {"Upgrade": "h2c"}}, "headers"),
    ("headers-proxy-authorization", {"headers": {"Proxy-Authorization": "x"}}, "headers"),
    ("headers-proxy-connection", {"headers": {"Proxy-Connection": "x"}}, "headers"),
    ("headers-content-length", {"headers": {"Content-Length": "5"}}, "headers"),
    ("headers-signature", {"headers": {"X-AsyncQueue-Signature": "t=1,v1=x"}}, "headers"),
    ("headers-webhook-id", {"headers": {"webhook-id": "msg_1"}}, "headers"),
    ("headers-bad-name", {"headers": {"Bad Header": "x"}}, "headers"),
    ("headers-name-colon", {"headers": {"X-A:": "x"}}, "headers"),
    ("headers-name-newline", {"headers": {"X-A\n": "x"}}, "headers"),
    ("headers-name-empty", {"headers": {"": "x"}}, "headers"),
    ("headers-duplicate", {"headers": {"X-A": "1", "x-a": "2"}}, "headers"),
    ("headers-value-too-long", {"headers": {"X-A": "a" * 8193}}, "headers"),
    ("headers-value-int", {"headers": {"X-A": 5}}, "headers.X-A"),
    ("headers-value-bool", {"headers": {"X-A": True}}, "headers.X-A"),
    ("headers-value-null", {"headers": {"X-A": None}}, "headers.X-A"),
    ("headers-value-object", {"headers": {"X-A": {"b": "c"}}}, "headers.X-A"),
    ("headers-value-list", {"headers": {"X-A": ["b"]}}, "headers.X-A"),
    ("headers-list", {"headers": ["X-A"]}, "headers"),
    ("headers-string", {"headers": "X-A: b"}, "headers"),
    ("headers-null", {"headers": None}, "headers"),
    ("payload-and-body", {"payload": {"a": 1}, "body": "x"}, "body"),
    ("payload-and-empty-body", {"payload": [], "body": ""}, "body"),
    ("body-int", {"body": 5}, "body"),
    ("body-object", {"body": {"a": 1}}, "body"),
    ("metadata-list", {"metadata": [1]}, "metadata"),
    ("metadata-string", {"metadata": "x"}, "metadata"),
    ("metadata-null", {"metadata": None}, "metadata"),
    ("idempotencyKey-empty", {"idempotencyKey": ""}, "idempotencyKey"),
    ("idempotencyKey-too-long", {"idempotencyKey": "k" * 256}, "idempotencyKey"),
    ("idempotencyKey-int", {"idempotencyKey": 5}, "idempotencyKey"),
    ("idempotencyKey-tab", {"idempotencyKey": "a\tb"}, "idempotencyKey"),
    ("onCompleteUrl-ftp", {"onCompleteUrl": "ftp://example.com/x"}, "onCompleteUrl"),
    ("onCompleteUrl-int", {"onCompleteUrl": 5}, "onCompleteUrl"),
    ("onCompleteUrl-credentials", {"onCompleteUrl": "https://u:p@example.com/"}, "onCompleteUrl"),
    ("webhookUrl-alias-ftp", {"webhookUrl": "ftp://example.com/x"}, "onCompleteUrl"),
]

BAD_TARGETS: list[tuple[str, Any]] = [
    ("null", None),
    ("int", 5),
    ("list", [TARGET]),
    ("empty", ""),
    ("ftp", "ftp://example.com/file"),
    ("file", "file:///etc/passwd"),
    ("javascript", "javascript:alert(1)"),
    ("gopher", "gopher://example.com:25/x"),
    ("no-scheme", "example.com/hook"),
    ("scheme-relative", "//example.com/hook"),
    ("no-host", "http:///path"),
    ("credentials", "http://user:pass@example.com/"),
    ("user-only", "http://user@example.com/"),
    ("empty-credentials", "http://:@example.com/"),
    ("space-in-host", "http://exa mple.com/"),
    ("leading-space", " https://example.com/"),
    ("trailing-newline", "https://example.com/\n"),
    ("tab", "https://example.com/\tx"),
    ("too-long", "https://example.com/" + "a" * 2100),
    ("port-too-big", "http://example.com:99999/"),
    ("port-zero", "http://example.com:0/"),
    ("port-not-a-number", "http://example.com:http/"),
    ("bad-ipv6", "http://[::1/"),
]


def test_an_integral_float_is_an_integer(client: APIClient) -> None:
    """JSON (and JSON Schema, which the OpenAPI document uses) has one number type: 5.0 is the
    integer 5. A fraction, a string or a boolean is still refused."""
    response = post(client, {"targetUrl": TARGET, "timeout": 5.0, "maxRetries": 2.0})
    assert response.status_code == 201, response.json()
    assert (response.json()["task"]["timeout"], response.json()["task"]["maxRetries"]) == (5, 2)


@pytest.mark.parametrize(
    ("data", "field"), [(d, f) for _, d, f in BAD_FIELDS], ids=[i for i, _, _ in BAD_FIELDS]
)
def test_bad_field_is_400_naming_it(client: APIClient, data: dict[str, Any], field: str) -> None:
    response = post(client, {"targetUrl": TARGET, **data})
    assert_error(response, 400, "validation_error", {field})
    assert Task.objects.count() == 0


@pytest.mark.parametrize("value", [v for _, v in BAD_TARGETS], ids=[i for i, _ in BAD_TARGETS])
def test_bad_target_url_is_400_naming_it(client: APIClient, value: Any) -> None:
    response = post(client, {"targetUrl": value})
    assert_error(response, 400, "validation_error", {"targetUrl"})
    assert Task.objects.count() == 0


def test_missing_target_url_is_400(client: APIClient) -> None:
    body = assert_error(post(client, {"payload": {"a": 1}}), 400, "validation_error", {"targetUrl"})
    assert body["fields"]["targetUrl"] == "This field is required."


def test_several_bad_fields_are_all_named(client: APIClient) -> None:
    response = post(client, {"targetUrl": TARGET, "timeout": "5", "priority": 11, "queue": ""})
    assert_error(response, 400, "validation_error", {"timeout", "priority", "queue"})


def test_unknown_fields_are_all_named(client: APIClient) -> None:
    response = post(client, {"targetUrl": TARGET, "foo": 1, "bar": 2})
    body = assert_error(response, 400, "validation_error", {"foo", "bar"})
    assert body["fields"]["foo"].startswith("Unknown field; the fields are targetUrl, method, ")


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        ("targetURL", "targetUrl"),
        ("target_url", "targetUrl"),
        ("maxRetry", "maxRetries"),
        ("waitforsignal", "waitForSignal"),
        ("callbackURL", "callbackUrl"),
        ("idempotency_key", "idempotencyKey"),
    ],
)
def test_an_unknown_field_suggests_the_closest_known_name(
    client: APIClient, sent: str, meant: str
) -> None:
    response = post(client, {"targetUrl": TARGET, sent: 1})
    body = assert_error(response, 400, "validation_error", {sent})
    assert body["fields"][sent] == f'Unknown field; did you mean "{meant}"?'


def test_a_bad_choice_lists_the_valid_ones(client: APIClient) -> None:
    response = post(client, {"targetUrl": TARGET, "retryBackoff": "exponentiel"})
    body = assert_error(response, 400, "validation_error", {"retryBackoff"})
    assert body["fields"]["retryBackoff"] == (
        '"exponentiel" is not valid; use one of "exponential", "linear", "fixed".'
    )


def test_415_says_that_json_is_required(client: APIClient) -> None:
    response = client.post(URL, "targetUrl=x", content_type="text/plain")
    body = assert_error(response, 415, "unsupported_media_type")
    assert body["error"].startswith(
        "Content-Type must be application/json (this request sent text/plain)"
    )


@pytest.mark.parametrize(
    ("settings", "data", "field"),
    [
        ({"QUEUES": ["default", "video"]}, {"queue": "other"}, "queue"),
        ({"MAX_BODY_BYTES": 10}, {"payload": "0123456789"}, "payload"),
        ({"MAX_BODY_BYTES": 10}, {"payload": {"k": "v" * 10}}, "payload"),
        ({"MAX_BODY_BYTES": 10}, {"payload": "ééééé"}, "payload"),
        ({"MAX_BODY_BYTES": 10}, {"body": "x" * 11}, "body"),
        ({"MAX_BODY_BYTES": 10}, {"body": "é" * 6}, "body"),
        ({"MAX_METADATA_BYTES": 10}, {"metadata": {"a": "0123456789"}}, "metadata"),
        ({"MAX_HEADERS": 2}, {"headers": {"A": "1", "B": "2", "C": "3"}}, "headers"),
        ({"MAX_HEADERS": 0}, {"headers": {"A": "1"}}, "headers"),
        ({"MAX_TIMEOUT": 10}, {"timeout": 11}, "timeout"),
        ({"MAX_RETRIES": 2}, {"maxRetries": 3}, "maxRetries"),
        ({"MAX_WAIT_TIME": 100}, {"maxWaitTime": 101}, "maxWaitTime"),
        ({"MAX_DELAY": 60}, {"delay": 61}, "delay"),
        ({"MAX_DELAY": 60}, {"delayUntil": iso(timezone.now() + timedelta(hours=1))}, "delayUntil"),
    ],
)
def test_limits_come_from_settings(
    client: APIClient, settings: dict[str, Any], data: dict[str, Any], field: str
) -> None:
    with aq_settings(**settings):
        response = post(client, {"targetUrl": TARGET, **data})
    assert_error(response, 400, "validation_error", {field})


@pytest.mark.parametrize(
    ("settings", "data"),
    [
        ({"QUEUES": ["default", "video"]}, {"queue": "video"}),
        ({"MAX_BODY_BYTES": 10}, {"payload": "01234567"}),
        ({"MAX_BODY_BYTES": 10}, {"payload": "éééé"}),
        ({"MAX_BODY_BYTES": 10}, {"body": "x" * 10}),
        ({"MAX_BODY_BYTES": 10}, {"body": "é" * 5}),
        ({"MAX_METADATA_BYTES": 10}, {"metadata": {"a": "12"}}),
        ({"MAX_HEADERS": 2}, {"headers": {"A": "1", "B": "2"}}),
        ({"MAX_TIMEOUT": 10}, {"timeout": 10}),
        ({"MAX_RETRIES": 2}, {"maxRetries": 2}),
        ({"MAX_WAIT_TIME": 100}, {"maxWaitTime": 100}),
        ({"MAX_DELAY": 60}, {"delay": 60}),
    ],
)
def test_limits_are_inclusive(
    client: APIClient, settings: dict[str, Any], data: dict[str, Any]
) -> None:
    with aq_settings(**settings):
        response = post(client, {"targetUrl": TARGET, **data})
    assert response.status_code == 201, response.content


def test_defaults_come_from_settings(client: APIClient) -> None:
    with aq_settings(DEFAULT_TIMEOUT=7, DEFAULT_MAX_RETRIES=1, DEFAULT_MAX_WAIT_TIME=99):
        response = post(client, {"targetUrl": TARGET})
    task = response.json()["task"]
    assert (task["timeout"], task["maxRetries"], task["maxWaitTime"]) == (7, 1, 99)


# --------------------------------------------------------------------------------------------
# Bad input: the request body itself
# --------------------------------------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _with_payload(raw_payload: str) -> str:
    return '{"targetUrl": "%s", "payload": %s}' % (TARGET, raw_payload)  # noqa: UP031


BAD_BODIES: list[tuple[str, bytes | str, set[str] | None]] = [
    ("malformed", "{", None),
    ("truncated", '{"targetUrl": "x"', None),
    ("trailing-garbage", '{"targetUrl": "x"} x', None),
    ("single-quotes", "{'targetUrl': 'x'}", None),
    ("trailing-comma", '{"targetUrl": "x",}', None),
    ("nested-5000", _nested(5000), None),
    ("payload-nested-5000", _with_payload(_nested(5000)), None),
    ("payload-nested-100", _with_payload(_nested(100)), None),
    ("payload-nested-objects", _with_payload('{"a":' * 200 + "1" + "}" * 200), None),
    ("nan", _with_payload("NaN"), None),
    ("infinity", _with_payload("Infinity"), None),
    ("minus-infinity", _with_payload("-Infinity"), None),
    ("overflowing-float", _with_payload("1e400"), None),
    ("huge-int", _with_payload("1" + "0" * 5000), None),
    ("nul-in-payload", _with_payload('"a\\u0000b"'), None),
    ("nul-in-payload-key", _with_payload('{"a\\u0000": 1}'), None),
    ("nul-in-target", '{"targetUrl": "https://example.com/\\u0000"}', None),
    ("nul-in-header", '{"targetUrl": "%s", "headers": {"X-A": "\\u0000"}}' % TARGET, None),  # noqa: UP031
    ("lone-surrogate", _with_payload('"\\ud800"'), None),
    ("lone-surrogate-key", _with_payload('{"\\udfff": 1}'), None),
    ("non-utf8", b'{"targetUrl": "https://example.com/\xff"}', None),
    ("latin1", '{"targetUrl": "%s", "payload": "café"}'.encode("latin-1") % TARGET.encode(), None),
    ("utf16", ('{"targetUrl": "%s"}' % TARGET).encode("utf-16"), None),  # noqa: UP031
    ("utf8-bom", b"\xef\xbb\xbf" + ('{"targetUrl": "%s"}' % TARGET).encode(), None),  # noqa: UP031
    ("list", "[1, 2]", {"body"}),
    ("empty-list", "[]", {"body"}),
    ("string", '"https://example.com"', {"body"}),
    ("number", "5", {"body"}),
    ("true", "true", {"body"}),
    ("null", "null", {"body"}),
]


@pytest.mark.parametrize(
    ("raw", "fields"), [(r, f) for _, r, f in BAD_BODIES], ids=[i for i, _, _ in BAD_BODIES]
)
def test_bad_body_is_400(client: APIClient, raw: bytes | str, fields: set[str] | None) -> None:
    response = post_raw(client, raw)
    code = "invalid_json" if fields is None else "validation_error"
    assert_error(response, 400, code, fields)
    assert Task.objects.count() == 0


def test_nesting_up_to_the_limit_is_accepted(client: APIClient) -> None:
    response = post_raw(client, _with_payload(_nested(60)))
    assert response.status_code == 201, response.content


def test_surrounding_whitespace_is_trimmed(client: APIClient) -> None:
    response = post(client, {"targetUrl": TARGET, "queue": " video\n", "idempotencyKey": "k\n"})
    assert response.status_code == 201, response.content
    assert response.json()["task"]["queue"] == "video"
    assert response.json()["task"]["idempotencyKey"] == "k"


def test_empty_body_is_a_missing_target(client: APIClient) -> None:
    assert_error(post_raw(client, ""), 400, "validation_error", {"targetUrl"})


def test_empty_object_is_a_missing_target(client: APIClient) -> None:
    assert_error(post_raw(client, "{}"), 400, "validation_error", {"targetUrl"})


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/octet-stream",
    ],
)
def test_wrong_content_type_is_415(client: APIClient, content_type: str) -> None:
    response = post_raw(client, json.dumps({"targetUrl": TARGET}), content_type=content_type)
    assert_error(response, 415, "unsupported_media_type")
    assert Task.objects.count() == 0


def test_json_with_charset_is_accepted(client: APIClient) -> None:
    response = post_raw(
        client,
        json.dumps({"targetUrl": TARGET, "payload": "é"}).encode(),
        content_type="application/json; charset=utf-8",
    )
    assert response.status_code == 201, response.content
    assert response.json()["task"]["payload"] == "é"


def test_oversize_request_is_413(client: APIClient) -> None:
    raw = json.dumps({"targetUrl": TARGET, "payload": "x" * 2000})
    with aq_settings(MAX_REQUEST_BYTES=1024):
        response = post_raw(client, raw)
    body = assert_error(response, 413, "payload_too_large")
    assert "1024" in body["error"]
    assert Task.objects.count() == 0


def test_request_at_the_limit_is_not_413(client: APIClient) -> None:
    raw = json.dumps({"targetUrl": TARGET, "payload": ""})
    raw = raw.replace('""', '"' + "x" * (1024 - len(raw)) + '"')
    assert len(raw.encode()) == 1024
    with aq_settings(MAX_REQUEST_BYTES=1024):
        response = post_raw(client, raw)
    assert response.status_code == 201, response.content


# --------------------------------------------------------------------------------------------
# SSRF guard at create time
# --------------------------------------------------------------------------------------------

PRIVATE_URLS = [
    "http://127.0.0.1/",
    "http://127.0.0.2:8080/x",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:7f00:1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[ff02::1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://localhost/",
    "http://localhost:8000/x",
    "http://LOCALHOST/",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_target_is_refused(client: APIClient, url: str) -> None:
    with no_private_targets():
        response = post(client, {"targetUrl": url})
    assert_error(response, 400, "validation_error", {"targetUrl"})
    assert Task.objects.count() == 0


@pytest.mark.parametrize(
    "url", ["http://localhost/", "http://localhost./", "http://foo.localhost/", "http://LOCALHOST/"]
)
def test_localhost_names_are_refused_without_resolving(
    client: APIClient, resolve_to: Callable[..., list[tuple[str, int]]], url: str
) -> None:
    resolve_to(error=OSError("Name or service not known"))
    with no_private_targets():
        response = post(client, {"targetUrl": url})
    assert_error(response, 400, "validation_error", {"targetUrl"})


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/done", "http://169.254.169.254/", "http://[::ffff:10.0.0.1]/"]
)
def test_private_on_complete_url_is_refused(client: APIClient, url: str) -> None:
    with no_private_targets():
        response = post(client, {"targetUrl": PUBLIC_IP_TARGET, "onCompleteUrl": url})
    assert_error(response, 400, "validation_error", {"onCompleteUrl"})


@pytest.mark.parametrize(
    "url",
    [
        PUBLIC_IP_TARGET,
        "https://93.184.216.34:8443/x?y=1",
        "http://8.8.8.8/",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/",
    ],
)
def test_public_address_is_accepted(client: APIClient, url: str) -> None:
    with no_private_targets():
        response = post(client, {"targetUrl": url, "onCompleteUrl": url})
    assert response.status_code == 201, response.content
    assert response.json()["task"]["targetUrl"] == url


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.1.2.3"],
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["::1"],
        ["::ffff:192.168.0.1"],
        ["93.184.216.34", "10.0.0.1"],
    ],
)
def test_name_resolving_to_a_private_address_is_refused(
    client: APIClient, resolve_to: Callable[..., list[tuple[str, int]]], addresses: list[str]
) -> None:
    lookups = resolve_to(*addresses)
    with no_private_targets():
        response = post(client, {"targetUrl": "https://internal.example.com:8443/x"})
    assert_error(response, 400, "validation_error", {"targetUrl"})
    assert lookups == [("internal.example.com", 8443)]


def test_name_resolving_to_a_public_address_is_accepted(
    client: APIClient, resolve_to: Callable[..., list[tuple[str, int]]]
) -> None:
    lookups = resolve_to("93.184.216.34")
    with no_private_targets():
        response = post(client, {"targetUrl": "https://api.example.com/x", "webhookUrl": DONE})
    assert response.status_code == 201, response.content
    assert sorted(lookups) == [("api.example.com", 443), ("example.com", 443)]


def test_on_complete_name_resolving_to_private_is_refused(
    client: APIClient, resolve_to: Callable[..., list[tuple[str, int]]]
) -> None:
    resolve_to("192.168.1.10")
    with no_private_targets():
        response = post(client, {"targetUrl": PUBLIC_IP_TARGET, "onCompleteUrl": DONE})
    assert_error(response, 400, "validation_error", {"onCompleteUrl"})


def test_private_targets_allowed_by_setting(client: APIClient) -> None:
    with aq_settings(ALLOW_PRIVATE_TARGETS=True):
        response = post(client, {"targetUrl": "http://127.0.0.1:8000/x"})
    assert response.status_code == 201, response.content


def test_allowing_private_targets_keeps_the_scheme_rules(client: APIClient) -> None:
    with aq_settings(ALLOW_PRIVATE_TARGETS=True):
        response = post(client, {"targetUrl": "file:///etc/passwd"})
    assert_error(response, 400, "validation_error", {"targetUrl"})


# --------------------------------------------------------------------------------------------
# Auth
# --------------------------------------------------------------------------------------------

ENDPOINTS = [
    ("post", URL),
    ("get", URL),
    ("get", f"{URL}/00000000-0000-7000-8000-000000000000"),
    ("delete", f"{URL}/00000000-0000-7000-8000-000000000000"),
    ("post", f"{URL}/00000000-0000-7000-8000-000000000000/cancel"),
    ("post", f"{URL}/00000000-0000-7000-8000-000000000000/retry"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_missing_key_is_401(anon: APIClient, db: Any, method: str, path: str) -> None:
    response = getattr(anon, method)(path, {"targetUrl": TARGET}, format="json")
    body = assert_error(response, 401, "not_authenticated")
    assert body["error"] == (
        "API key required: send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`"
    )
    assert response["WWW-Authenticate"] == 'Bearer realm="asyncqueue"'
    assert Task.objects.count() == 0


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_wrong_key_is_401(anon: APIClient, db: Any, method: str, path: str) -> None:
    anon.credentials(HTTP_AUTHORIZATION="Bearer aq_not-a-real-key")
    response = getattr(anon, method)(path, {"targetUrl": TARGET}, format="json")
    body = assert_error(response, 401, "authentication_failed")
    assert body["error"] == "Invalid or revoked API key"
    assert response["WWW-Authenticate"] == 'Bearer realm="asyncqueue"'


@pytest.mark.parametrize(
    "credentials",
    [
        {"HTTP_AUTHORIZATION": "Bearer {key}"},
        {"HTTP_AUTHORIZATION": "bearer {key}"},
        {"HTTP_AUTHORIZATION": "Bearer   {key}  "},
        {"HTTP_X_API_KEY": "{key}"},
    ],
    ids=["bearer", "bearer-lowercase", "bearer-spaces", "x-api-key"],
)
def test_both_key_headers_work(
    anon: APIClient, api_key: str, team: Team, credentials: dict[str, str]
) -> None:
    anon.credentials(**{k: v.format(key=api_key) for k, v in credentials.items()})
    response = post(anon, {"targetUrl": TARGET})
    assert response.status_code == 201, response.content
    assert Task.objects.get(pk=response.json()["task"]["id"]).team == team


@pytest.mark.parametrize(
    "credentials",
    [
        {"HTTP_X_API_KEY": "aq_wrong"},
        {"HTTP_AUTHORIZATION": "Bearer aq_wrong"},
        {"HTTP_AUTHORIZATION": "Bearer " + "a" * 5000},
        {"HTTP_AUTHORIZATION": "Bearer aq_\u00e9t\u00e9"},
    ],
    ids=["x-api-key", "bearer", "very-long", "non-ascii"],
)
def test_wrong_key_in_either_header_is_401(
    anon: APIClient, db: Any, credentials: dict[str, str]
) -> None:
    anon.credentials(**credentials)
    body = assert_error(anon.get(URL), 401, "authentication_failed")
    assert body["error"] == "Invalid or revoked API key"


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc", ""]
)
def test_no_usable_key_is_401_key_required(anon: APIClient, db: Any, authorization: str) -> None:
    anon.credentials(HTTP_AUTHORIZATION=authorization)
    body = assert_error(anon.get(URL), 401, "not_authenticated")
    assert body["error"].startswith("API key required")
    assert "`Authorization: Bearer <key>`" in body["error"]


@pytest.mark.parametrize(
    ("authorization", "says"),
    [
        ("aq_0123456789", "the Authorization header does not use the Bearer scheme"),
        ("Token aq_0123456789", "the Authorization header does not use the Bearer scheme"),
        ("Bearer", "the Bearer scheme has no key after it"),
    ],
)
def test_a_key_sent_the_wrong_way_is_told_how_to_send_it(
    anon: APIClient, db: Any, authorization: str, says: str
) -> None:
    anon.credentials(HTTP_AUTHORIZATION=authorization)
    body = assert_error(anon.get(URL), 401, "not_authenticated")
    assert body["error"] == (
        f"API key required: {says}; send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`"
    )


def test_revoked_key_is_refused_at_once(client: APIClient, api_key: str) -> None:
    assert client.get(URL).status_code == 200
    key = services.authenticate_api_key(api_key)
    assert key is not None
    assert services.revoke_api_key(key) is True
    body = assert_error(client.get(URL), 401, "authentication_failed")
    assert body["error"] == "Invalid or revoked API key"
    assert_error(post(client, {"targetUrl": TARGET}), 401, "authentication_failed")
    assert Task.objects.count() == 0


def test_a_key_revoked_by_another_process_creates_nothing(client: APIClient, api_key: str) -> None:
    from asyncqueue_django.models import ApiKey

    assert post(client, {"targetUrl": TARGET}).status_code == 201  # the key is now cached
    # Revoked behind this process's back (another web process, the admin of another
    # machine): the cached key must not create a task.
    ApiKey.objects.filter(digest=tokens.digest(api_key)).update(revoked_at=timezone.now())
    body = assert_error(post(client, {"targetUrl": TARGET}), 401, "authentication_failed")
    assert body["error"] == "Invalid or revoked API key"
    assert Task.objects.count() == 1
    assert_error(client.get(URL), 401, "authentication_failed")  # reads check the key


@pytest.mark.django_db(transaction=True)
def test_a_create_with_a_recently_used_key_is_one_statement(client: APIClient) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert post(client, {"targetUrl": TARGET}).status_code == 201  # warm: key read, touched
    with CaptureQueriesContext(connection) as queries:
        assert post(client, {"targetUrl": TARGET}).status_code == 201
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        assert statements == ["INSERT"]  # the key is checked inside it
    else:
        assert statements == ["SELECT", "INSERT"]  # SQLite reads the key first, in-process


def test_another_key_of_the_team_still_works_after_a_revoke(
    client: APIClient, api_key: str, team: Team, anon: APIClient
) -> None:
    second = services.create_api_key(team, "second").raw_key
    key = services.authenticate_api_key(api_key)
    assert key is not None
    services.revoke_api_key(key)
    anon.credentials(HTTP_X_API_KEY=second)
    assert anon.get(URL).status_code == 200
    assert client.get(URL).status_code == 401


def test_task_belongs_to_the_keys_team(client: APIClient, team: Team, other_team: Team) -> None:
    response = post(client, {"targetUrl": TARGET})
    assert Task.objects.get(pk=response.json()["task"]["id"]).team_id == team.pk


# --------------------------------------------------------------------------------------------
# Team isolation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "status"),
    [
        ("get", "", "pending"),
        ("delete", "", "pending"),
        ("post", "/cancel", "pending"),
        ("post", "/retry", "failed"),
        ("get", "/", "pending"),
    ],
)
def test_another_teams_task_is_404(
    client: APIClient, other_team: Team, method: str, suffix: str, status: str
) -> None:
    theirs = make_task(other_team)
    set_status(theirs, status)
    response = getattr(client, method)(f"{URL}/{theirs.pk}{suffix}")
    body = assert_error(response, 404, "not_found")
    assert body["error"] == "Task not found"
    # The same answer as for an id that does not exist at all.
    missing = getattr(client, method)(f"{URL}/00000000-0000-7000-8000-000000000000{suffix}")
    assert missing.status_code == 404
    assert missing.json() == body
    theirs.refresh_from_db()
    assert theirs.status == status


def test_another_teams_tasks_are_not_listed(
    client: APIClient, team: Team, other_team: Team
) -> None:
    mine = make_task(team)
    make_task(other_team)
    make_task(other_team, wait_for_signal=True)
    body = client.get(URL).json()
    assert [t["id"] for t in body["tasks"]] == [str(mine.pk)]
    assert body["pagination"]["total"] == 1


# --------------------------------------------------------------------------------------------
# List: pagination and filters
# --------------------------------------------------------------------------------------------


def _make_ordered(team: Team, count: int, **spec: Any) -> list[Task]:
    """``count`` tasks with created_at one second apart (oldest first)."""
    base = timezone.now() - timedelta(hours=1)
    tasks = []
    for i in range(count):
        task = make_task(team, **spec)
        Task.objects.filter(pk=task.pk).update(created_at=base + timedelta(seconds=i))
        tasks.append(task)
    return tasks


def test_list_empty(client: APIClient) -> None:
    response = client.get(URL)
    assert response.status_code == 200
    assert response.json() == {
        "tasks": [],
        "pagination": {"total": 0, "limit": 20, "offset": 0, "hasMore": False},
    }


@pytest.mark.parametrize(
    ("query", "indexes", "pagination"),
    [
        ("", [4, 3, 2, 1, 0], {"total": 5, "limit": 20, "offset": 0, "hasMore": False}),
        ("?limit=2", [4, 3], {"total": 5, "limit": 2, "offset": 0, "hasMore": True}),
        ("?limit=2&offset=2", [2, 1], {"total": 5, "limit": 2, "offset": 2, "hasMore": True}),
        ("?limit=2&offset=4", [0], {"total": 5, "limit": 2, "offset": 4, "hasMore": False}),
        ("?limit=5", [4, 3, 2, 1, 0], {"total": 5, "limit": 5, "offset": 0, "hasMore": False}),
        ("?offset=5", [], {"total": 5, "limit": 20, "offset": 5, "hasMore": False}),
        ("?offset=50", [], {"total": 5, "limit": 20, "offset": 50, "hasMore": False}),
        (
            "?limit=100&offset=1",
            [3, 2, 1, 0],
            {"total": 5, "limit": 100, "offset": 1, "hasMore": False},
        ),
        (
            "?limit=&offset=",
            [4, 3, 2, 1, 0],
            {"total": 5, "limit": 20, "offset": 0, "hasMore": False},
        ),
    ],
)
def test_pagination_newest_first(
    client: APIClient,
    team: Team,
    query: str,
    indexes: list[int],
    pagination: dict[str, Any],
) -> None:
    tasks = _make_ordered(team, 5)
    body = client.get(URL + query).json()
    assert [t["id"] for t in body["tasks"]] == [str(tasks[i].pk) for i in indexes]
    assert body["pagination"] == pagination


def test_default_limit_is_20(client: APIClient, team: Team) -> None:
    tasks = _make_ordered(team, 21)
    body = client.get(URL).json()
    assert len(body["tasks"]) == 20
    assert body["tasks"][0]["id"] == str(tasks[-1].pk)
    assert body["pagination"] == {"total": 21, "limit": 20, "offset": 0, "hasMore": True}


def test_listed_tasks_are_full_task_objects(client: APIClient, team: Team) -> None:
    make_task(team, wait_for_signal=True)
    task = client.get(URL).json()["tasks"][0]
    assert_task_object(task)
    assert "signalToken" not in task


@pytest.fixture
def mixed(team: Team) -> dict[str, Task]:
    tasks = {}
    for i, (name, status, queue, wait) in enumerate(
        [
            ("p", "pending", "default", False),
            ("d", "delayed", "video", False),
            ("w", "waiting", "default", True),
            ("c", "completed", "video", True),
            ("f", "failed", "default", False),
            ("x", "cancelled", "email", False),
        ]
    ):
        task = make_task(team, queue=queue, wait_for_signal=wait)
        set_status(task, status, created_at=timezone.now() - timedelta(hours=1, seconds=-i))
        tasks[name] = task
    return tasks


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("?status=pending", ["p"]),
        ("?status=pending,cancelled", ["x", "p"]),
        ("?status=waiting,completed,failed", ["f", "c", "w"]),
        ("?status=timeout", []),
        ("?status=", ["x", "f", "c", "w", "d", "p"]),
        ("?queue=video", ["c", "d"]),
        ("?queue=nope", []),
        ("?queue=default&status=pending,waiting", ["w", "p"]),
        ("?waitForSignal=true", ["c", "w"]),
        ("?waitForSignal=false", ["x", "f", "d", "p"]),
        ("?waitForSignal=true&status=completed", ["c"]),
        ("?queue=video&status=delayed&limit=1", ["d"]),
    ],
)
def test_filters(client: APIClient, mixed: dict[str, Task], query: str, names: list[str]) -> None:
    body = client.get(URL + query).json()
    assert [t["id"] for t in body["tasks"]] == [str(mixed[n].pk) for n in names]
    assert body["pagination"]["total"] == len(names)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?status=bogus", "status"),
        ("?status=pending,bogus", "status"),
        ("?status=PENDING", "status"),
        ("?status=pending%00", "status"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=abc", "limit"),
        ("?limit=1.5", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=99999999999999999999999", "limit"),
        ("?offset=-1", "offset"),
        ("?offset=abc", "offset"),
        ("?offset=99999999999999999999999", "offset"),
        ("?waitForSignal=yes", "waitForSignal"),
        ("?waitForSignal=1", "waitForSignal"),
        ("?queue=bad%20name", "queue"),
        ("?queue=a%00b", "queue"),
        ("?queue=" + "q" * 101, "queue"),
    ],
)
def test_bad_list_query_is_400(client: APIClient, query: str, field: str) -> None:
    assert_error(client.get(URL + query), 400, "validation_error", {field})


# --------------------------------------------------------------------------------------------
# Get
# --------------------------------------------------------------------------------------------


def test_get_returns_the_task_with_attempts(client: APIClient, team: Team) -> None:
    created = post(client, {"targetUrl": TARGET, "metadata": {"a": 1}}).json()["task"]
    response = client.get(f"{URL}/{created['id']}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"task"}
    assert body["task"]["attempts"] == []
    assert body["task"]["webhookDeliveries"] == []
    detail_only = ("attempts", "webhookDeliveries")
    assert {k: v for k, v in body["task"].items() if k not in detail_only} == created


@pytest.mark.parametrize(
    "task_id",
    ["not-a-uuid", "12345", "00000000-0000-7000-8000-00000000000g", "%00", "' OR 1=1 --"],
)
def test_invalid_uuid_is_404(client: APIClient, task_id: str) -> None:
    body = assert_error(client.get(f"{URL}/{task_id}"), 404, "not_found")
    assert body["error"] in ("Task not found", "Not found")


def test_unknown_uuid_is_404(client: APIClient) -> None:
    body = assert_error(client.get(f"{URL}/00000000-0000-7000-8000-000000000000"), 404, "not_found")
    assert body["error"] == "Task not found"


def test_uuid_is_accepted_in_upper_case(client: APIClient, team: Team) -> None:
    task = make_task(team)
    response = client.get(f"{URL}/{str(task.pk).upper()}")
    assert response.status_code == 200
    assert response.json()["task"]["id"] == str(task.pk)


# --------------------------------------------------------------------------------------------
# Idempotency
# --------------------------------------------------------------------------------------------

IDEMPOTENT_BODY = {"targetUrl": TARGET, "payload": {"n": 1}, "waitForSignal": True}


def test_same_key_same_body_returns_the_original(client: APIClient) -> None:
    first = post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201
    assert "signalToken" in first.json()
    second = post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY="k-1")
    assert second.status_code == 200
    assert set(second.json()) == {"task"}
    assert second.json()["task"]["id"] == first.json()["task"]["id"]
    assert second.json()["task"] == first.json()["task"]
    assert Task.objects.count() == 1


def test_same_key_in_body_returns_the_original(client: APIClient) -> None:
    data = {**IDEMPOTENT_BODY, "idempotencyKey": "k-2"}
    first = post(client, data)
    second = post(client, data)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["task"]["id"] == first.json()["task"]["id"]
    assert second.json()["task"]["idempotencyKey"] == "k-2"
    assert "signalToken" not in second.json()
    assert Task.objects.count() == 1


def test_header_and_body_key_are_the_same_key(client: APIClient) -> None:
    first = post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY="k-3")
    second = post(client, {**IDEMPOTENT_BODY, "idempotencyKey": "k-3"})
    third = post(client, {**IDEMPOTENT_BODY, "idempotencyKey": "k-3"}, HTTP_IDEMPOTENCY_KEY="k-3")
    assert (first.status_code, second.status_code, third.status_code) == (201, 200, 200)
    assert first.json()["task"]["id"] == second.json()["task"]["id"] == third.json()["task"]["id"]


@pytest.mark.parametrize(
    "change",
    [
        {"payload": {"n": 2}},
        {"targetUrl": TARGET + "?x"},
        {"waitForSignal": False},
        {"priority": 6},
        {"headers": {"X-A": "1"}},
        {"metadata": {"m": 1}},
    ],
)
def test_same_key_different_body_is_409(client: APIClient, change: dict[str, Any]) -> None:
    assert post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY="k-4").status_code == 201
    response = post(client, {**IDEMPOTENT_BODY, **change}, HTTP_IDEMPOTENCY_KEY="k-4")
    assert_error(response, 409, "idempotency_conflict")
    assert Task.objects.count() == 1


def test_body_key_different_body_is_409(client: APIClient) -> None:
    assert post(client, {**IDEMPOTENT_BODY, "idempotencyKey": "k-5"}).status_code == 201
    response = post(client, {**IDEMPOTENT_BODY, "payload": 2, "idempotencyKey": "k-5"})
    assert_error(response, 409, "idempotency_conflict")


def test_alias_and_canonical_spelling_are_the_same_request(client: APIClient) -> None:
    first = post(client, {"targetUrl": TARGET, "maxRetries": 2}, HTTP_IDEMPOTENCY_KEY="k-6")
    second = post(client, {"callbackUrl": TARGET, "retries": 2}, HTTP_IDEMPOTENCY_KEY="k-6")
    assert (first.status_code, second.status_code) == (201, 200)


def test_same_key_same_body_with_relative_delay_returns_the_original(client: APIClient) -> None:
    data = {"targetUrl": TARGET, "delay": 60}
    first = post(client, data, HTTP_IDEMPOTENCY_KEY="k-7")
    second = post(client, data, HTTP_IDEMPOTENCY_KEY="k-7")
    assert (first.status_code, second.status_code) == (201, 200)


def test_header_and_body_disagree_is_400(client: APIClient) -> None:
    response = post(client, {**IDEMPOTENT_BODY, "idempotencyKey": "a"}, HTTP_IDEMPOTENCY_KEY="b")
    assert_error(response, 400, "validation_error", {"idempotencyKey"})
    assert Task.objects.count() == 0


@pytest.mark.parametrize(
    "header", ["", "   ", "k" * 256, "a\tb", "a\x00b", "a\x7fb", "caf\xe9"], ids=repr
)
def test_bad_idempotency_header_is_400(client: APIClient, header: str) -> None:
    response = post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY=header)
    assert_error(response, 400, "validation_error", {"Idempotency-Key"})
    assert Task.objects.count() == 0


def test_idempotency_header_is_stripped(client: APIClient) -> None:
    first = post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY="  k-8 ")
    assert first.json()["task"]["idempotencyKey"] == "k-8"
    second = post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY="k-8")
    assert second.status_code == 200


def test_expired_key_creates_a_new_task(client: APIClient) -> None:
    first = post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY="k-9").json()["task"]
    Task.objects.filter(pk=first["id"]).update(
        idempotency_expires_at=timezone.now() - timedelta(seconds=1)
    )
    second = post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY="k-9")
    assert second.status_code == 201
    assert second.json()["task"]["id"] != first["id"]
    assert "signalToken" in second.json()
    # A different body is fine too once the window has passed.
    Task.objects.filter(pk=second.json()["task"]["id"]).update(
        idempotency_expires_at=timezone.now() - timedelta(seconds=1)
    )
    third = post(client, {"targetUrl": TARGET}, HTTP_IDEMPOTENCY_KEY="k-9")
    assert third.status_code == 201
    assert Task.objects.count() == 3
    assert Task.objects.filter(idempotency_key="k-9").count() == 1


def test_idempotency_window_comes_from_settings(client: APIClient) -> None:
    before = timezone.now()
    with aq_settings(IDEMPOTENCY_TTL=30):
        task_id = post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY="k-10").json()["task"]["id"]
    expires = Task.objects.get(pk=task_id).idempotency_expires_at
    assert expires is not None
    assert before + timedelta(seconds=30) <= expires <= timezone.now() + timedelta(seconds=30)


def test_key_from_the_past_created_with_now(client: APIClient, team: Team) -> None:
    spec = TaskSpec(target_url=TARGET, payload={"n": 1}, wait_for_signal=True)
    old = services.create_task(
        team, spec, idempotency_key="k-11", now=timezone.now() - timedelta(days=2)
    )
    response = post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY="k-11")
    assert response.status_code == 201
    assert response.json()["task"]["id"] != str(old.task.pk)


def test_keys_are_per_team(client: APIClient, other_team: Team) -> None:
    spec = TaskSpec(target_url=TARGET, payload={"n": 1}, wait_for_signal=True)
    theirs = services.create_task(other_team, spec, idempotency_key="shared")
    response = post(client, IDEMPOTENT_BODY, HTTP_IDEMPOTENCY_KEY="shared")
    assert response.status_code == 201
    assert response.json()["task"]["id"] != str(theirs.task.pk)
    # From now on the key is ours too: a different body under it conflicts with our task.
    assert post(client, {"targetUrl": TARGET}, HTTP_IDEMPOTENCY_KEY="shared").status_code == 409
    assert Task.objects.filter(idempotency_key="shared").count() == 2


# --------------------------------------------------------------------------------------------
# Cancel (and DELETE)
# --------------------------------------------------------------------------------------------

ALL_STATUSES = [
    "pending",
    "delayed",
    "processing",
    "waiting",
    "completed",
    "failed",
    "timeout",
    "cancelled",
]
CANCELLABLE = ["pending", "delayed", "waiting"]


def _cancel(client: APIClient, how: str, task: Task) -> Any:
    if how == "delete":
        return client.delete(f"{URL}/{task.pk}")
    return client.post(f"{URL}/{task.pk}/cancel")


@pytest.mark.parametrize("how", ["post", "delete"])
@pytest.mark.parametrize("status", ALL_STATUSES)
def test_cancel_from_each_status(client: APIClient, team: Team, status: str, how: str) -> None:
    task = make_task(team)
    set_status(task, status)
    before = timezone.now()
    response = _cancel(client, how, task)
    if status in CANCELLABLE:
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"task"}
        assert body["task"]["id"] == str(task.pk)
        assert body["task"]["status"] == "cancelled"
        assert parse(body["task"]["completedAt"]) >= before
        assert body["task"]["nextAttemptAt"] is None
        task.refresh_from_db()
        assert task.status == "cancelled"
    else:
        body = assert_error(response, 409, "invalid_status")
        assert body["status"] == status
        assert body["error"] == f"Cannot cancel this task: it {STATUS_PHRASES[status]}"
        task.refresh_from_db()
        assert task.status == status


def test_cancel_twice_is_409_cancelled(client: APIClient, team: Team) -> None:
    task = make_task(team)
    assert client.post(f"{URL}/{task.pk}/cancel").status_code == 200
    body = assert_error(client.post(f"{URL}/{task.pk}/cancel"), 409, "invalid_status")
    assert body["status"] == "cancelled"


def test_cancel_ignores_a_body(client: APIClient, team: Team) -> None:
    task = make_task(team)
    response = client.post(f"{URL}/{task.pk}/cancel", {"reason": "x"}, format="json")
    assert response.status_code == 200


# --------------------------------------------------------------------------------------------
# Retry
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_retry_from_each_status(client: APIClient, team: Team, status: str) -> None:
    task = make_task(team, max_retries=3)
    set_status(task, status, retry_count=2, error="boom", result={"statusCode": 500})
    before = timezone.now()
    response = client.post(f"{URL}/{task.pk}/retry")
    if status in ("failed", "timeout"):
        assert response.status_code == 200, response.content
        body = response.json()["task"]
        assert body["id"] == str(task.pk)
        assert body["status"] == "pending"
        assert body["retryCount"] == 0
        assert body["error"] is None
        assert body["result"] is None
        assert body["completedAt"] is None
        assert parse(body["nextAttemptAt"]) >= before
        task.refresh_from_db()
        assert (task.status, task.retry_count) == ("pending", 0)
    else:
        body = assert_error(response, 409, "invalid_status")
        assert body["status"] == status
        assert body["error"] == f"Cannot retry this task: it {STATUS_PHRASES[status]}"
        task.refresh_from_db()
        assert (task.status, task.retry_count) == (status, 2)


# --------------------------------------------------------------------------------------------
# Routing: trailing slashes, unknown paths, wrong methods
# --------------------------------------------------------------------------------------------


def test_trailing_slash_accepted_on_every_path(client: APIClient, team: Team) -> None:
    created = post(client, {"targetUrl": TARGET}, path=URL + "/")
    assert created.status_code == 201, created.content
    task_id = created.json()["task"]["id"]
    assert client.get(URL + "/").json()["pagination"]["total"] == 1
    assert client.get(f"{URL}/{task_id}/").status_code == 200
    assert client.post(f"{URL}/{task_id}/cancel/").status_code == 200
    Task.objects.filter(pk=task_id).update(status="failed")
    assert client.post(f"{URL}/{task_id}/retry/").status_code == 200
    assert client.delete(f"{URL}/{task_id}/").status_code == 200
    assert Task.objects.get(pk=task_id).status == "cancelled"


def test_paths_without_slash_are_not_redirected(client: APIClient, team: Team) -> None:
    task = make_task(team)
    for response in (
        client.get(URL),
        client.get(f"{URL}/{task.pk}"),
        client.post(f"{URL}/{task.pk}/cancel"),
    ):
        assert response.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/nope",
        "/v1/",
        "/v1/task",
        "/v1/tasks/00000000-0000-7000-8000-000000000000/nope",
        "/v1/tasks/00000000-0000-7000-8000-000000000000/cancel/extra",
        "/v1/tasks//cancel",
        "/v1/tasks/a.b",
    ],
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_path_is_json_404(
    client: APIClient, anon: APIClient, path: str, method: str
) -> None:
    for c in (client, anon):
        body = assert_error(getattr(c, method)(path), 404, "not_found")
        assert body["error"] == "Not found"


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("put", ""),
        ("patch", ""),
        ("delete", ""),
        ("put", "/{id}"),
        ("patch", "/{id}"),
        ("post", "/{id}"),
        ("get", "/{id}/cancel"),
        ("delete", "/{id}/cancel"),
        ("get", "/{id}/retry"),
        ("put", "/{id}/retry"),
    ],
)
def test_wrong_method_is_json_405(client: APIClient, team: Team, method: str, suffix: str) -> None:
    task = make_task(team)
    path = URL + suffix.format(id=task.pk)
    response = getattr(client, method)(path, {"targetUrl": TARGET}, format="json")
    body = assert_error(response, 405, "method_not_allowed")
    assert body["error"] == f'Method "{method.upper()}" not allowed.'
    task.refresh_from_db()
    assert task.status == "pending"
    assert Task.objects.count() == 1
