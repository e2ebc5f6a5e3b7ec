"""Hostile targets and receivers: nothing a peer does can outlast an attempt's deadline, make an
attempt unrecordable, cost a task or a duplicate call, pull credentials to another origin, probe
an internal port, or dodge a per-IP limit.

The peers are real sockets on this machine: :class:`RawPeer` speaks bytes exactly as a
misbehaving server would (slowly, with odd headers), so nothing here depends on an HTTP library
being polite. Each test names the case it pins.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import DataError
from django.test import override_settings
from django.utils import timezone
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient

from asyncqueue_django import http, outbound, services, tasks
from asyncqueue_django.api.throttles import client_address
from asyncqueue_django.models import Attempt, DeliveryStatus, Task, Team, WebhookDelivery
from asyncqueue_django.services import TaskSpec
from tests.peers import SLOW_SECONDS, RawPeer, drip
from tests.worker import Worker, wait_for


def _slow(body_parts: int) -> float:
    return SLOW_SECONDS / body_parts


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"


def slow_status_line() -> list[tuple[bytes, float]]:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    return [*drip(head, _slow(len(head))), (b"ok", 0)]


def slow_headers() -> list[tuple[bytes, float]]:
    lines = [f"X-Slow-{i}: {i}\r\n".encode() for i in range(24)]
    return [
        (b"HTTP/1.1 200 OK\r\n", 0),
        *[(line, _slow(len(lines))) for line in lines],
        (b"Content-Length: 2\r\n\r\nok", 0),
    ]


def slow_fixed_length_body() -> list[tuple[bytes, float]]:
    return [(OK_HEAD + b"Content-Length: 80\r\n\r\n", 0), *drip(b"x" * 80, _slow(80))]


def slow_chunked_body() -> list[tuple[bytes, float]]:
    chunks = [(b"1\r\nx\r\n", _slow(40)) for _ in range(40)]
    return [(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n", 0), *chunks, (b"0\r\n\r\n", 0)]


def slow_close_delimited_body() -> list[tuple[bytes, float]]:
    return [(OK_HEAD + b"Connection: close\r\n\r\n", 0), *drip(b"y" * 60, _slow(60))]


SLOW_PEERS = {
    "status line": slow_status_line,
    "headers": slow_headers,
    "fixed-length body": slow_fixed_length_body,
    "chunked body": slow_chunked_body,
    "close-delimited body": slow_close_delimited_body,
}


# --------------------------------------------------------------------------------------------
# 1. Every byte of an attempt is bounded by its deadline
# --------------------------------------------------------------------------------------------


#: Slow before the status line is complete: no answer, the attempt times out.
SLOW_HEADS = ("status line", "headers")


@pytest.mark.parametrize("kind", sorted(SLOW_PEERS))
def test_a_slow_peer_cannot_outlast_the_attempt_deadline(
    peers: Callable[..., RawPeer], kind: str
) -> None:
    """A head still arriving at the deadline is a timeout (retried); once the status line and
    headers are in, the status is the answer and a body still dripping at the deadline is kept
    as far as it came, marked incomplete (the target answered: it is not called again)."""
    peer = peers(SLOW_PEERS[kind]())
    result = http.call("POST", peer.url("/slow"), headers={}, body=b"{}", timeout=1)
    if kind in SLOW_HEADS:
        assert (result.error_kind, result.error) == ("timeout", "timeout after 1s")
        assert result.status_code is None
        assert result.retryable
    else:
        assert (result.status_code, result.error, result.truncated) == (200, "", True)
        assert result.succeeded
    wait_for(lambda: peer.conns and (peer.conns[0].client_hung_up or peer.conns[0].finished))
    assert len(peer.conns) == 1
    assert peer.conns[0].client_hung_up, "the client waited for the whole slow answer"


def test_the_deadline_spans_every_redirect_hop(peers: Callable[..., RawPeer]) -> None:
    slow = peers(slow_headers())
    # Each hop answers quickly but only after a pause shorter than the deadline: together
    # they exceed it.
    hop = peers([(b"", 0.6), (f"HTTP/1.1 307 X\r\nLocation: {slow.url()}\r\n".encode(), 0)])
    first = peers([(b"", 0.6), (f"HTTP/1.1 307 X\r\nLocation: {hop.url()}\r\n".encode(), 0)])
    for p in (hop, first):
        p.script.append((b"Content-Length: 0\r\n\r\n", 0))
    result = http.call("POST", first.url(), headers={}, body=b"{}", timeout=1.5)
    assert result.error_kind == "timeout"
    wait_for(lambda: slow.conns and (slow.conns[0].client_hung_up or slow.conns[0].finished))
    assert slow.conns[0].client_hung_up


def test_a_tls_handshake_that_never_answers_is_bounded_by_the_deadline(
    peers: Callable[..., RawPeer],
) -> None:
    """The peer accepts the TCP connection and never says a word of TLS for 6 s;
    ``CONNECT_TIMEOUT`` (10 s here) is longer than that, the attempt's deadline (1 s) shorter,
    and the deadline wins."""
    silent = peers([], patience=6)
    url = f"https://127.0.0.1:{silent.port}/"
    with override_settings(ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": True, "CONNECT_TIMEOUT": 10}):
        result = http.call("POST", url, headers={}, body=b"{}", timeout=1)
    assert result.error_kind == "timeout"
    wait_for(lambda: silent.conns and (silent.conns[0].client_hung_up or silent.conns[0].finished))
    assert silent.conns[0].client_hung_up


def test_a_fast_answer_is_unaffected_and_its_connection_is_reused(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fast").respond_with_data("ok")
    for _ in range(3):
        result = http.call("GET", httpserver.url_for("/fast"), headers={}, body=None, timeout=1)
        assert (result.status_code, result.body, result.error) == (200, b"ok", "")


# --------------------------------------------------------------------------------------------
# 2. What cannot be sent is refused at create, naming the field
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("山田", "not ISO-8859-1 (Latin-1)"),
        ("emoji 🙂", "not ISO-8859-1 (Latin-1)"),
        ("a\x01b", "control character U+0001"),
        ("a\x7fb", "control character U+007F"),
        ("line\nbreak", "control character U+000A"),
        (" leading", "white space"),
        ("trailing\t", "white space"),
    ],
)
def test_a_header_value_that_cannot_be_sent_is_a_400_naming_the_header(
    client: APIClient, value: str, message: str
) -> None:
    response = client.post(
        "/v1/tasks",
        {"targetUrl": "https://example.com/hook", "headers": {"X-Customer-Name": value}},
        format="json",
    )
    assert response.status_code == 400
    error = str(response.json()["fields"]["headers"])
    assert "'X-Customer-Name'" in error
    assert message in error
    assert not Task.objects.exists()


@pytest.mark.parametrize("value", ["Müller", "café", "tab\tinside", "plain ascii", ""])
def test_latin1_header_values_are_accepted_and_arrive_as_latin1_bytes(
    client: APIClient, value: str, peers: Callable[..., RawPeer]
) -> None:
    response = client.post(
        "/v1/tasks",
        {"targetUrl": "https://example.com/hook", "headers": {"X-Name": value}},
        format="json",
    )
    assert response.status_code == 201
    peer = peers([(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0)])
    http.call("GET", peer.url(), headers={"X-Name": value}, body=None, timeout=5)
    assert f"X-Name: {value}\r\n".encode("latin-1") in peer.conns[0].request


# --------------------------------------------------------------------------------------------
# 3. What a target returns is storable; an exception after a claim is recorded at once
# --------------------------------------------------------------------------------------------


ODD_ANSWER = (
    b"HTTP/1.1 200 Fine\x00Really\r\n"
    b"X-Odd: a\x00b\r\n"
    b"X-Latin: caf\xe9\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 18\r\n\r\n"
    b'{"v": "nul\\u0000"}'
)


@pytest.mark.django_db
def test_a_nul_in_a_response_header_or_body_is_stored_not_fatal(
    team: Team, peers: Callable[..., RawPeer]
) -> None:
    """On PostgreSQL, jsonb refuses ``\\u0000``: the answer used to be unrecordable."""
    peer = peers([(ODD_ANSWER, 0)])
    task = services.create_task(team, TaskSpec(target_url=peer.url())).task
    claimed = services.claim_task(task.pk, worker="w1")
    assert claimed is not None
    call = http.call("POST", peer.url(), headers={}, body=b"{}", timeout=5)
    assert call.headers["X-Odd"] == "a\x00b"  # as received
    assert services.finish_attempt(claimed, call, worker="w1") == "completed"
    task.refresh_from_db()
    assert task.result["statusCode"] == 200
    assert task.result["headers"]["X-Odd"] == "a\ufffdb"
    assert task.result["headers"]["X-Latin"] == "café"
    assert task.result["body"] == '{"v": "nul\\u0000"}'  # kept as text, not as JSON with a NUL
    attempt = Attempt.objects.get(task=task)
    assert attempt.response_headers["X-Odd"] == "a\ufffdb"


def test_every_text_from_a_peer_is_made_storable() -> None:
    raw = http.CallResult(
        status_code=502,
        headers={"X-\x00Name": "v\x00", "X-Surrogate": "\udc80"},
        error="refused: \x00 \udcff",
        final_url="http://x/\x00",
    )
    clean = services.storable_call(raw)
    assert clean.headers == {"X-\ufffdName": "v\ufffd", "X-Surrogate": "\ufffd"}
    assert clean.error == "refused: \ufffd \ufffd"
    assert clean.final_url == "http://x/\ufffd"
    json.dumps(clean.headers).encode("utf-8")


@pytest.mark.django_db
def test_an_exception_before_the_call_is_recorded_at_once_as_a_failed_attempt(
    team: Team, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not left to the lease ("worker lost" minutes later): the attempt is recorded with a clear
    error and the task moves on by the normal retry rules."""
    httpserver.expect_request("/t").respond_with_data("ok")
    task = services.create_task(team, TaskSpec(target_url=httpserver.url_for("/t"))).task

    def broken(task: Task) -> Any:
        raise RuntimeError("a bug while building the request")

    monkeypatch.setattr(outbound, "build_callback", broken)
    assert tasks.execute_task(str(task.pk)) == "delayed"
    task.refresh_from_db()
    assert task.status == "delayed"
    assert task.lease_expires_at is None
    attempt = Attempt.objects.get(task=task)
    assert attempt.outcome == "retrying"
    assert attempt.error == "internal error: the request could not be made (RuntimeError)"
    assert httpserver.log == []


@pytest.mark.django_db
def test_a_2xx_whose_recording_fails_is_recorded_without_the_response_and_not_called_again(
    team: Team, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/t").respond_with_json({"done": True})
    task = services.create_task(team, TaskSpec(target_url=httpserver.url_for("/t"))).task
    real_finish = services.finish_attempt
    calls = {"n": 0}

    def finish_failing_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise DataError("a column refused the value")
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(services, "finish_attempt", finish_failing_once)
    assert tasks.execute_task(str(task.pk)) == "completed"
    task.refresh_from_db()
    assert task.status == "completed"
    assert task.result["statusCode"] == 200
    assert task.result["body"] == "[the response could not be stored: DataError]"
    assert len(httpserver.log) == 1
    # A late duplicate message finds nothing to do.
    assert tasks.execute_task(str(task.pk)) is None
    assert len(httpserver.log) == 1


@pytest.mark.django_db
def test_a_webhook_whose_rendering_fails_is_recorded_and_retried(
    team: Team, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", on_complete_url=httpserver.url_for("/h"))
    ).task
    services.cancel_task(team, task.pk)
    delivery = WebhookDelivery.objects.get(task=task)

    def broken(delivery: WebhookDelivery) -> str:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(outbound, "render_webhook", broken)
    assert tasks.deliver_webhook(str(delivery.pk)) == DeliveryStatus.PENDING
    delivery.refresh_from_db()
    assert delivery.lease_expires_at is None
    assert delivery.retry_count == 1
    assert "internal error" in delivery.last_error
    assert httpserver.log == []


# --------------------------------------------------------------------------------------------
# 4. Redirects: the request is repeated, method and body included (303 alone becomes a GET)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_repeats_the_post_with_its_body(httpserver: HTTPServer, code: int) -> None:
    httpserver.expect_request("/old").respond_with_data(
        "", status=code, headers={"Location": "/hooks"}
    )
    httpserver.expect_request("/hooks", method="POST", data=b'{"e":1}').respond_with_data("ok")
    result = http.call("POST", httpserver.url_for("/old"), headers={}, body=b'{"e":1}', timeout=5)
    assert (result.status_code, result.body) == (200, b"ok")
    assert [r.method for r, _ in httpserver.log] == ["POST", "POST"]
    assert httpserver.log[1][0].get_data() == b'{"e":1}'


@pytest.mark.django_db
@pytest.mark.parametrize("code", [301, 302])
def test_a_webhook_redirected_with_301_or_302_is_delivered_with_its_body(
    team: Team, httpserver: HTTPServer, code: int
) -> None:
    httpserver.expect_request("/hook").respond_with_data(
        "", status=code, headers={"Location": "/hooks"}
    )
    httpserver.expect_request("/hooks", method="POST").respond_with_data("ok")
    task = services.create_task(
        team,
        TaskSpec(target_url="http://127.0.0.1:9/", on_complete_url=httpserver.url_for("/hook")),
    ).task
    services.cancel_task(team, task.pk)
    delivery = WebhookDelivery.objects.get(task=task)
    assert tasks.deliver_webhook(str(delivery.pk)) == DeliveryStatus.DELIVERED
    final, _ = httpserver.log[1]
    assert final.method == "POST"
    assert json.loads(final.get_data())["event"] == "task.cancelled"
    assert final.headers["webhook-id"] == str(delivery.pk)
    assert final.headers["X-AsyncQueue-Signature"]


@pytest.mark.django_db
def test_a_webhook_redirect_without_location_is_a_failed_retried_attempt(
    team: Team, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/hook").respond_with_data("", status=302)
    task = services.create_task(
        team,
        TaskSpec(target_url="http://127.0.0.1:9/", on_complete_url=httpserver.url_for("/hook")),
    ).task
    services.cancel_task(team, task.pk)
    delivery = WebhookDelivery.objects.get(task=task)
    assert tasks.deliver_webhook(str(delivery.pk)) == DeliveryStatus.PENDING
    delivery.refresh_from_db()
    assert (delivery.last_status_code, delivery.last_error) == (302, "HTTP 302")


# --------------------------------------------------------------------------------------------
# 5. Credentials never follow a redirect to another origin
# --------------------------------------------------------------------------------------------

SECRETS = {
    "Authorization": "Bearer s3cret",
    "Cookie": "session=s3cret",
    "X-Api-Key": "s3cret",
    "X-Auth-Token": "s3cret",
    "X-Client-Secret": "s3cret",
}


def _redirect_chain(
    first: HTTPServer, second_url: str, code: int = 307
) -> tuple[str, dict[str, str]]:
    first.expect_request("/a").respond_with_data("", status=code, headers={"Location": second_url})
    return first.url_for("/a"), {**SECRETS, "X-Plain": "custom", "Content-Type": "text/plain"}


@pytest.fixture
def other_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    server.stop()


def test_credentials_are_dropped_when_the_port_changes(
    httpserver: HTTPServer, other_server: HTTPServer
) -> None:
    other_server.expect_request("/b").respond_with_data("ok")
    url, headers = _redirect_chain(httpserver, other_server.url_for("/b"))
    assert http.call("POST", url, headers=headers, body=b"", timeout=5).status_code == 200
    (arrived, _), *_ = other_server.log
    for name in SECRETS:
        assert name not in arrived.headers, name
    assert "X-Plain" not in arrived.headers  # a custom header could be a credential too
    assert arrived.headers["Content-Type"] == "text/plain"
    (sent, _), *_ = httpserver.log
    assert all(sent.headers[name] == value for name, value in SECRETS.items())


def test_credentials_stay_within_the_same_origin(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/b").respond_with_data("ok")
    url, headers = _redirect_chain(httpserver, "/b")
    http.call("POST", url, headers=headers, body=b"", timeout=5)
    arrived, _ = httpserver.log[1]
    assert all(arrived.headers[name] == value for name, value in SECRETS.items())


@pytest.mark.parametrize(
    ("to", "same"),
    [
        ("https://api.example.com/x", True),
        ("https://api.example.com:443/y", True),
        ("https://API.example.com/z", True),
        ("http://api.example.com/x", False),  # https → http (call() refuses to follow it)
        ("https://api.example.com:8443/x", False),
        ("https://evil.example.com/x", False),
    ],
)
def test_origin_change_drops_credentials_and_keeps_signatures(to: str, same: bool) -> None:
    ours = {"webhook-signature": "v1,abc", "X-AsyncQueue-Signature": "t=1,v1=ab"}
    negotiation = {"Accept": "application/json", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16}
    headers = {**SECRETS, **ours, **negotiation, "X-Custom": "maybe a key"}
    kept = http.headers_for_redirect(headers, "https://api.example.com/hook", to)
    if same:
        assert kept == headers
    else:
        assert kept == {**ours, **negotiation}


# --------------------------------------------------------------------------------------------
# 6. No connection to a refused address, and one error whatever listens there
# --------------------------------------------------------------------------------------------


@pytest.fixture
def open_port_on_127_0_0_2(peers: Callable[..., RawPeer]) -> RawPeer:
    return peers([(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0)], host="127.0.0.2")


def _closed_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "spelling", ["0x7f000002", "2130706434", "127.2", "0177.0.0.2", "127.000.000.002"]
)
def test_a_redirect_to_an_internal_address_connects_nowhere_and_says_the_same_for_any_port(
    httpserver: HTTPServer, open_port_on_127_0_0_2: RawPeer, spelling: str
) -> None:
    closed = _closed_port("127.0.0.2")
    errors = []
    for port in (open_port_on_127_0_0_2.port, closed):
        httpserver.clear()
        httpserver.expect_request("/r").respond_with_data(
            "", status=302, headers={"Location": f"http://{spelling}:{port}/"}
        )
        first = httpserver.url_for("/r").replace("localhost", "127.0.0.1")
        with override_settings(
            ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": False, "ALLOWED_NETWORKS": ["127.0.0.1/32"]}
        ):
            result = http.call("POST", first, headers={}, body=b"", timeout=5)
        assert result.error_kind == "blocked"
        assert not result.retryable
        errors.append(result.error.replace(str(port), "PORT"))
    assert errors[0] == errors[1]
    assert "127.0.0.2 is a loopback address" in errors[0]
    time.sleep(0.2)
    assert open_port_on_127_0_0_2.conns == [], "a connection was opened to a refused address"


def test_a_name_resolving_to_a_refused_address_is_never_connected_to(
    open_port_on_127_0_0_2: RawPeer,
) -> None:
    previous = http.set_resolver(lambda host, port: ["127.0.0.2"])
    try:
        with override_settings(ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": False}):
            url = f"http://internal.example.com:{open_port_on_127_0_0_2.port}/"
            result = http.call("POST", url, headers={}, body=b"", timeout=5)
    finally:
        http.set_resolver(previous)
    assert result.error_kind == "blocked"
    assert "127.0.0.2 is a loopback address" in result.error
    time.sleep(0.2)
    assert open_port_on_127_0_0_2.conns == []


def test_a_name_is_connected_to_at_the_address_that_was_checked(
    peers: Callable[..., RawPeer],
) -> None:
    """The resolver is asked once per connection and the socket goes to that very address: a
    second, different answer (DNS rebinding) cannot slip in between check and connect."""
    peer = peers([(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0)])
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    previous = http.set_resolver(resolver)
    try:
        with override_settings(ASYNCQUEUE={"ALLOWED_NETWORKS": ["127.0.0.1/32"]}):
            result = http.call(
                "GET", f"http://rebind.example.com:{peer.port}/", headers={}, body=None, timeout=5
            )
    finally:
        http.set_resolver(previous)
    assert (result.status_code, result.body) == (200, b"ok")
    assert asked == ["rebind.example.com"]


# --------------------------------------------------------------------------------------------
# 7. Per-IP limits: REMOTE_ADDR unless the request came through a trusted proxy
# --------------------------------------------------------------------------------------------


def _signal(client: APIClient, **meta: str) -> int:
    return int(
        client.post(
            "/v1/signals/" + "0" * 64, {"status": "completed"}, format="json", **meta
        ).status_code
    )


@pytest.mark.django_db
def test_x_forwarded_for_cannot_dodge_the_signal_limit() -> None:
    anon = APIClient()
    with override_settings(ASYNCQUEUE={"SIGNAL_RATE_LIMIT": "3/min"}):
        codes = [_signal(anon) for _ in range(3)]
        spoofed = [_signal(anon, HTTP_X_FORWARDED_FOR=f"203.0.113.{i}") for i in range(5)]
    assert codes == [404, 404, 404]
    assert spoofed == [429] * 5


@pytest.mark.django_db
def test_behind_a_trusted_proxy_each_client_has_its_own_bucket() -> None:
    anon = APIClient()
    settings = {"SIGNAL_RATE_LIMIT": "2/min", "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    via_lb = {"REMOTE_ADDR": "10.0.0.5"}
    with override_settings(ASYNCQUEUE=settings):
        a = [_signal(anon, HTTP_X_FORWARDED_FOR="198.51.100.1", **via_lb) for _ in range(3)]
        b = [_signal(anon, HTTP_X_FORWARDED_FOR="198.51.100.2", **via_lb) for _ in range(2)]
        # A client prepending its own guesses is still itself: the proxy appended the truth.
        c = [
            _signal(anon, HTTP_X_FORWARDED_FOR=f"1.2.3.{i}, 198.51.100.1", **via_lb)
            for i in range(2)
        ]
    assert a == [404, 404, 429]
    assert b == [404, 404]
    assert c == [429, 429]


class _Req:
    def __init__(self, remote: str, forwarded: str | None = None) -> None:
        self.META = {"REMOTE_ADDR": remote}
        if forwarded is not None:
            self.META["HTTP_X_FORWARDED_FOR"] = forwarded


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "client"),
    [
        ([], "203.0.113.9", "1.1.1.1", "203.0.113.9"),
        (["10.0.0.0/8"], "203.0.113.9", "1.1.1.1", "203.0.113.9"),  # not from a proxy
        (["10.0.0.0/8"], "10.0.0.5", "1.1.1.1", "1.1.1.1"),
        (["10.0.0.0/8"], "10.0.0.5", "6.6.6.6, 1.1.1.1", "1.1.1.1"),
        (["10.0.0.0/8"], "10.0.0.5", "6.6.6.6, 1.1.1.1, 10.0.0.7", "1.1.1.1"),  # two proxies
        (["10.0.0.0/8"], "10.0.0.5", "", "10.0.0.5"),
        (["10.0.0.0/8"], "10.0.0.5", "garbage, 1.1.1.1", "1.1.1.1"),
        (["10.0.0.0/8"], "10.0.0.5", "1.1.1.1, garbage", "10.0.0.5"),
        (["10.0.0.0/8", "::1/128"], "::1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_address(trusted: list[str], remote: str, forwarded: str, client: str) -> None:
    with override_settings(ASYNCQUEUE={"TRUSTED_PROXIES": trusted}):
        assert client_address(_Req(remote, forwarded)) == client


# --------------------------------------------------------------------------------------------
# End to end with a real worker: the reproductions
# --------------------------------------------------------------------------------------------

HOSTILE = {"WEBHOOK_TIMEOUT": 2, "WEBHOOK_QUEUE": "hostile", "WEBHOOK_RETRY_SCHEDULE": []}


@pytest.fixture(scope="module")
def hostile_worker(worker_factory: Callable[..., Worker]) -> Worker:
    return worker_factory(
        queues="hostile", beat=False, ASYNCQUEUE_TEST_OVERRIDES=json.dumps(HOSTILE)
    )


def _settings() -> dict[str, Any]:
    from django.conf import settings

    return {**settings.ASYNCQUEUE, **HOSTILE}


def _create_once(client: APIClient, peer: RawPeer, timeout: int) -> str:
    """Create a task on the hostile worker's queue that is not retried; its id."""
    body = {"targetUrl": peer.url(), "timeout": timeout, "maxRetries": 0, "queue": "hostile"}
    return str(client.post("/v1/tasks", body, format="json").json()["task"]["id"])


def _assert_called_once_and_hung_up(peer: RawPeer) -> None:
    """The peer took one connection, and the worker closed it (it did not wait it out)."""
    assert len(peer.conns) == 1
    # The worker records the attempt right after closing; the peer notices a moment later.
    wait_for(lambda: peer.conns[0].client_hung_up or peer.conns[0].finished, 10)
    assert peer.conns[0].client_hung_up


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_e2e_a_dripping_target_fails_by_its_timeout_once_and_is_called_once(
    client: APIClient, hostile_worker: Worker, peers: Callable[..., RawPeer]
) -> None:
    peer = peers(slow_headers())
    task_id = _create_once(client, peer, timeout=2)
    task = wait_for(lambda: Task.objects.filter(pk=task_id, status="failed").first(), timeout=20)
    assert task.error == "timeout after 2s after 1 attempt"
    assert list(Attempt.objects.filter(task=task).values_list("outcome", flat=True)) == ["failed"]
    _assert_called_once_and_hung_up(peer)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_e2e_a_target_dripping_its_body_after_200_completes_once_with_what_came(
    client: APIClient, hostile_worker: Worker, peers: Callable[..., RawPeer]
) -> None:
    """The issue's reproduction: 200, Content-Length 80, then one byte at a time. The attempt
    ends at its deadline; the target did answer 200, so the task completes with the body as far
    as it came, and the target is called exactly once."""
    peer = peers(slow_fixed_length_body())
    task_id = _create_once(client, peer, timeout=2)
    task = wait_for(lambda: Task.objects.filter(pk=task_id, status="completed").first(), 20)
    assert task.result["statusCode"] == 200
    assert set(task.result["body"]) <= {"x"}
    assert len(task.result["body"]) < 80
    _assert_called_once_and_hung_up(peer)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_e2e_a_dripping_webhook_receiver_is_bounded_by_webhook_timeout(
    team: Team, hostile_worker: Worker, peers: Callable[..., RawPeer]
) -> None:
    peer = peers(slow_headers())
    with override_settings(ASYNCQUEUE=_settings()):
        task = services.create_task(
            team,
            TaskSpec(
                target_url="http://127.0.0.1:9/",
                on_complete_url=peer.url(),
                queue="hostile",
                delay_until=timezone.now() + timedelta(hours=1),
            ),
        ).task
        services.cancel_task(team, task.pk)
    delivery = wait_for(
        lambda: WebhookDelivery.objects.filter(task=task, status="failed").first(), timeout=20
    )
    assert delivery.last_error == "timeout after 2s"
    assert delivery.attempt_count == 1
    _assert_called_once_and_hung_up(peer)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_e2e_a_nul_in_a_header_completes_the_task(
    client: APIClient, hostile_worker: Worker, peers: Callable[..., RawPeer]
) -> None:
    peer = peers([(ODD_ANSWER, 0)])
    response = client.post(
        "/v1/tasks", {"targetUrl": peer.url(), "queue": "hostile"}, format="json"
    )
    assert response.status_code == 201, response.json()
    task_id = response.json()["task"]["id"]
    task = wait_for(lambda: Task.objects.filter(pk=task_id, status="completed").first())
    assert task.result["headers"]["X-Odd"] == "a\ufffdb"
    assert len(peer.conns) == 1


@pytest.mark.parametrize(
    ("from_url", "to_url", "refused"),
    [
        ("https://api.example.com/hook", "http://api.example.com/hook", True),
        ("https://api.example.com/hook", "http://other.example.com/", True),
        ("https://api.example.com/hook", "https://other.example.com/", False),
        ("http://api.example.com/hook", "https://api.example.com/hook", False),
        ("http://api.example.com/hook", "http://api.example.com/next", False),
    ],
)
def test_a_redirect_from_https_to_http_is_not_followed(
    from_url: str, to_url: str, refused: bool
) -> None:
    """The request and its body would travel in clear text: ``call`` raises this reason as a
    blocked redirect (not retried)."""
    reason = http.redirect_refusal(from_url, to_url)
    assert (reason == "a redirect from https to http is not followed") is refused
