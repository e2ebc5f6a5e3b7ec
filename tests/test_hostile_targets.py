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
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from tests.worker import Worker, wait_for

# --------------------------------------------------------------------------------------------
# A raw TCP peer
# --------------------------------------------------------------------------------------------

#: How long a slow peer's whole answer would take: far longer than any deadline tested here, so
#: "the client hung up before the peer finished" is a plain fact, not a timing threshold.
SLOW_SECONDS = 12.0


@dataclass
class Conn:
    request: bytes = b""
    bytes_sent: int = 0
    finished: bool = False  # the peer sent its whole script
    client_hung_up: bool = False  # the client closed the connection first


@dataclass
class RawPeer:
    """A TCP server on ``host`` that reads one request head and then plays ``script``: a list
    of ``(bytes, pause_after_seconds)``. It records every connection."""

    script: list[tuple[bytes, float]]
    host: str = "127.0.0.1"
    patience: float = SLOW_SECONDS  # how long it waits for a request head
    conns: list[Conn] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            conn = Conn()
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(client, conn), daemon=True).start()

    def _serve(self, client: socket.socket, conn: Conn) -> None:
        client.settimeout(self.patience)
        try:
            while b"\r\n\r\n" not in conn.request:
                chunk = client.recv(65536)
                if not chunk:
                    conn.client_hung_up = True
                    return
                conn.request += chunk
            head, _, body = conn.request.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while len(body) < length:  # read the whole request, so a peek below sees only EOF
                chunk = client.recv(65536)
                if not chunk:
                    conn.client_hung_up = True
                    return
                body += chunk
                conn.request += chunk
            for data, pause in self.script:
                if data:
                    client.sendall(data)
                    conn.bytes_sent += len(data)
                if pause:
                    # A closed client shows up as EOF (or a reset) while we wait.
                    client.settimeout(pause)
                    try:
                        if client.recv(1, socket.MSG_PEEK) == b"":
                            conn.client_hung_up = True
                            return
                    except TimeoutError:
                        pass
            conn.finished = True
        except TimeoutError:
            conn.finished = True  # waited the whole script out: the client never gave up
        except OSError:
            conn.client_hung_up = True
        finally:
            client.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def drip(data: bytes, pause: float) -> list[tuple[bytes, float]]:
    """``data`` one byte at a time, ``pause`` seconds apart."""
    return [(data[i : i + 1], pause) for i in range(len(data))]


@pytest.fixture
def peers() -> Iterator[Callable[..., RawPeer]]:
    made: list[RawPeer] = []

    def make(
        script: list[tuple[bytes, float]], host: str = "127.0.0.1", patience: float = SLOW_SECONDS
    ) -> RawPeer:
        peer = RawPeer(script, host, patience)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


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


@pytest.mark.parametrize("kind", sorted(SLOW_PEERS))
def test_a_slow_peer_cannot_outlast_the_attempt_deadline(
    peers: Callable[..., RawPeer], kind: str
) -> None:
    peer = peers(SLOW_PEERS[kind]())
    result = http.call("POST", peer.url("/slow"), headers={}, body=b"{}", timeout=1)
    assert (result.error_kind, result.error) == ("timeout", "timeout after 1s")
    assert result.status_code is None
    assert result.retryable
    wait_for(lambda: peer.conns and (peer.conns[0].client_hung_up or peer.conns[0].finished))
    assert len(peer.conns) == 1
    assert peer.conns[0].client_hung_up, "the client waited for the whole slow answer"


def test_the_deadline_spans_every_redirect_hop(peers: Callable[..., RawPeer]) -> None:
    slow = peers(slow_fixed_length_body())
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
    return first.url_for("/a"), {**SECRETS, "X-Plain": "kept"}


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
    assert arrived.headers["X-Plain"] == "kept"
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
        ("http://api.example.com/x", False),  # https → http
        ("https://api.example.com:8443/x", False),
        ("https://evil.example.com/x", False),
    ],
)
def test_origin_change_drops_credentials_and_keeps_signatures(to: str, same: bool) -> None:
    headers = {**SECRETS, "webhook-signature": "v1,abc", "X-AsyncQueue-Signature": "t=1,v1=ab"}
    kept = http.headers_for_redirect(headers, "https://api.example.com/hook", to)
    if same:
        assert kept == headers
    else:
        assert kept == {"webhook-signature": "v1,abc", "X-AsyncQueue-Signature": "t=1,v1=ab"}


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


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_e2e_a_dripping_target_fails_by_its_timeout_once_and_is_called_once(
    client: APIClient, hostile_worker: Worker, peers: Callable[..., RawPeer]
) -> None:
    peer = peers(slow_fixed_length_body())
    task_id = client.post(
        "/v1/tasks",
        {"targetUrl": peer.url(), "timeout": 2, "maxRetries": 0, "queue": "hostile"},
        format="json",
    ).json()["task"]["id"]
    task = wait_for(lambda: Task.objects.filter(pk=task_id, status="failed").first(), timeout=20)
    assert task.error == "timeout after 2s after 1 attempt"
    assert list(Attempt.objects.filter(task=task).values_list("outcome", flat=True)) == ["failed"]
    assert len(peer.conns) == 1
    assert peer.conns[0].client_hung_up


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_e2e_a_dripping_webhook_receiver_is_bounded_by_webhook_timeout(
    team: Team, hostile_worker: Worker, peers: Callable[..., RawPeer]
) -> None:
    peer = peers(slow_chunked_body())
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
    assert len(peer.conns) == 1
    assert peer.conns[0].client_hung_up


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
