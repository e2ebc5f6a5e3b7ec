"""Hostile peers, second round: what an adversarial review of the first round's hardening
found. Each test is one kind of fault (named by a letter in its section) and failed before the
fix it pins: cookie state between calls, connect time past the deadline, name lookups starving
each other, header values that pass the create check but cannot be sent, unbounded stored
headers, proxies seen as IPv4-mapped addresses, IPv6 clients rotating within their /64, odd
``Retry-After`` digits, bodies that break after the status line, a create held by a slow name
server, and credential headers no name list recognises.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from asyncqueue_django import http, services, tasks
from asyncqueue_django.api.throttles import client_address
from asyncqueue_django.conf import app_settings
from asyncqueue_django.models import Attempt, DeliveryStatus, Task, Team, WebhookDelivery
from asyncqueue_django.services import TaskSpec
from tests.peers import RawPeer

OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


# --------------------------------------------------------------------------------------------
# A. The per-thread requests.Session keeps a cookie jar: one task's cookies go out on another
#    task's call (any team) to the same host, and on a redirect there from a hostile target.
# --------------------------------------------------------------------------------------------


def test_a_cookie_set_by_one_attempts_target_is_not_sent_on_a_later_unrelated_call(
    peers: Callable[..., RawPeer],
) -> None:
    peer = peers(
        [
            (
                b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=team-a-session; Path=/\r\n"
                b"Content-Length: 0\r\n\r\n",
                0,
            )
        ]
    )
    # Team A's task logs in (its target answers with a session cookie) ...
    http.call(
        "GET", peer.url("/login"), headers={"Authorization": "Bearer A"}, body=None, timeout=5
    )
    # ... then another task, with no credentials at all, calls the same host on this worker.
    http.call("GET", peer.url("/other-team"), headers={}, body=None, timeout=5)
    second = peer.conns[-1].request
    assert b"team-a-session" not in second, f"another task's cookie was sent: {second!r}"


def test_a_cookie_does_not_follow_a_redirect_to_another_origin(
    peers: Callable[..., RawPeer],
) -> None:
    """Same root cause, seen through the redirect rule: task headers lose ``Cookie`` when the
    port changes, but the jar (host-scoped, port-blind) adds the first origin's cookie back."""
    other = peers([(OK_EMPTY, 0)])
    first = peers(
        [
            (
                b"HTTP/1.1 307 X\r\nSet-Cookie: sid=first-origin; Path=/\r\n"
                + f"Location: {other.url('/next')}\r\n".encode()
                + b"Content-Length: 0\r\n\r\n",
                0,
            )
        ]
    )
    result = http.call(
        "POST", first.url("/a"), headers={"Cookie": "task=secret"}, body=b"{}", timeout=5
    )
    assert result.status_code == 200
    request = other.conns[0].request
    assert b"task=secret" not in request  # the task header was dropped, as documented
    assert b"first-origin" not in request, f"a cookie crossed origins: {request!r}"


# --------------------------------------------------------------------------------------------
# B. connect() is not bounded by the attempt's deadline: each address of a name gets its own
#    min(CONNECT_TIMEOUT, remaining-at-start). A name with N unanswering addresses holds the
#    worker N times as long (with timeout 60 and CONNECT_TIMEOUT 10, 11 addresses outlast the
#    100 s lease: "worker lost" and a second call while the first is still connecting).
# --------------------------------------------------------------------------------------------


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A port on 0.0.0.0 whose accept queue is full: SYNs to it go unanswered, so a connect
    hangs (as for a firewalled address) instead of being refused."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.3)
    yield port
    for s in fillers:
        s.close()
    listener.close()


def test_a_name_with_many_unanswering_addresses_is_bounded_by_the_deadline(
    blackhole_port: int,
) -> None:
    addresses = [f"127.0.0.{i}" for i in range(2, 8)]
    previous = http.set_resolver(lambda host, port: addresses)
    try:
        with override_settings(ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": True, "CONNECT_TIMEOUT": 10}):
            started = time.monotonic()
            result = http.call(
                "GET",
                f"http://many.example.com:{blackhole_port}/",
                headers={},
                body=None,
                timeout=1,
            )
            took = time.monotonic() - started
    finally:
        http.set_resolver(previous)
    assert result.error_kind == "timeout"
    assert took < 3, f"a 1 s attempt took {took:.1f} s (one connect timeout per address)"


# --------------------------------------------------------------------------------------------
# C. Name resolution runs on one 8-thread pool per worker process; a lookup that hangs keeps
#    its thread after the attempt gave up. Eight hanging names (one tenant's tasks, or a
#    nameserver that never answers) make every other task's lookup time out.
# --------------------------------------------------------------------------------------------


def test_hanging_lookups_of_one_tenant_do_not_make_other_tasks_time_out(
    peers: Callable[..., RawPeer],
) -> None:
    peer = peers([(OK_EMPTY, 0)])

    def resolver(host: str, port: int) -> list[str]:
        if host.startswith("hang"):
            time.sleep(3)
        return ["127.0.0.1"]

    previous = http.set_resolver(resolver)
    try:
        threads = [
            threading.Thread(
                target=http.call,
                args=("GET", f"http://hang{i}.example.com:{peer.port}/"),
                kwargs={"headers": {}, "body": None, "timeout": 0.5},
            )
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()  # every hanging attempt is over (timed out after 0.5 s)
        result = http.call(
            "GET", f"http://good.example.com:{peer.port}/", headers={}, body=None, timeout=2
        )
    finally:
        http.set_resolver(previous)
        time.sleep(3)  # let the pool drain for the tests after this one
    assert (result.status_code, result.error) == (200, "")


# --------------------------------------------------------------------------------------------
# D. A header value starting with Unicode white space that is Latin-1 (U+00A0, U+0085) passes
#    header_value_problem (it strips only " \t"), gets a 201, and then every attempt fails
#    "invalid request: InvalidHeader" (requests' \S is Unicode-aware): the target is never
#    called and the task fails "(not retried)".
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["\xa0leading nbsp", "\x85leading nel", "\xa0"])
def test_a_header_value_accepted_at_create_can_be_sent(
    client: APIClient, peers: Callable[..., RawPeer], value: str
) -> None:
    response = client.post(
        "/v1/tasks",
        {"targetUrl": "https://example.com/hook", "headers": {"X-Name": value}},
        format="json",
    )
    if response.status_code == 400:
        return  # refused at create, naming the field: fine
    assert response.status_code == 201
    peer = peers([(OK_EMPTY, 0)])
    result = http.call("GET", peer.url(), headers={"X-Name": value}, body=None, timeout=5)
    assert (result.status_code, result.error) == (200, ""), (
        f"accepted with 201, but every attempt fails: {result.error}"
    )


# --------------------------------------------------------------------------------------------
# E. Response headers are stored without any cap: a target answering 100 headers of ~20-60 KB
#    (what http.client accepts) stores megabytes in result.headers and in every attempt row,
#    while the body is capped at MAX_STORED_RESPONSE_BYTES (64 KiB).
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_stored_response_headers_are_capped_like_the_body(
    team: Team, peers: Callable[..., RawPeer]
) -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 20_000) for i in range(60))
    peer = peers([(b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 0\r\n\r\n", 0)])
    task = services.create_task(team, TaskSpec(target_url=peer.url())).task
    claimed = services.claim_task(task.pk, worker="w1")
    assert claimed is not None
    call = http.call("POST", peer.url(), headers={}, body=b"{}", timeout=5)
    assert services.finish_attempt(claimed, call, worker="w1") == "completed"
    task = Task.objects.get(pk=task.pk)
    attempt = Attempt.objects.get(task=task)
    assert task.result is not None
    cap = app_settings.MAX_STORED_RESPONSE_BYTES + 4096
    stored_result = len(json.dumps(task.result["headers"]))
    stored_attempt = len(json.dumps(attempt.response_headers))
    assert stored_result <= cap, f"result.headers stores {stored_result} bytes"
    assert stored_attempt <= cap, f"attempt.response_headers stores {stored_attempt} bytes"


# --------------------------------------------------------------------------------------------
# F. Per-IP limits: a proxy in TRUSTED_PROXIES ("10.0.0.0/8") seen on a dual-stack socket as
#    REMOTE_ADDR "::ffff:10.0.0.5" is not trusted, so every client behind the load balancer
#    shares the proxy's bucket (one client can lock all out of signals).
# --------------------------------------------------------------------------------------------


class _Req:
    def __init__(self, remote: str, forwarded: str) -> None:
        self.META: dict[str, Any] = {"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_FOR": forwarded}


def test_an_ipv4_mapped_remote_addr_of_a_trusted_proxy_is_trusted() -> None:
    with override_settings(ASYNCQUEUE={"TRUSTED_PROXIES": ["10.0.0.0/8"]}):
        assert client_address(_Req("::ffff:10.0.0.5", "198.51.100.1")) == "198.51.100.1"
        # and a trusted proxy spelled IPv4-mapped inside the header is skipped like any other
        assert client_address(_Req("10.0.0.5", "198.51.100.1, ::ffff:10.0.0.7")) == ("198.51.100.1")


# --------------------------------------------------------------------------------------------
# G. Per-IP limits and IPv6: a client directly on IPv6 holds a /64 (2^64 addresses) and picks
#    a new REMOTE_ADDR per request, so "a client cannot pick its own bucket" does not hold.
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_signal_limit_holds_for_a_client_rotating_addresses_in_its_ipv6_64() -> None:
    anon = APIClient()
    codes = []
    with override_settings(ASYNCQUEUE={"SIGNAL_RATE_LIMIT": "3/min"}):
        for i in range(6):
            response = anon.post(
                "/v1/signals/" + "0" * 64,
                {"status": "completed"},
                format="json",
                REMOTE_ADDR=f"2001:db8:1:2::{i + 1:x}",
            )
            codes.append(response.status_code)
    assert codes[3:] == [429, 429, 429], f"one /64 got {codes}"


# --------------------------------------------------------------------------------------------
# H. Retry-After with a Latin-1 digit other than 0-9 (bytes B2/B3/B9: "²", "³", "¹"):
#    str.isdigit() is True, float() raises ValueError, call() reports "invalid request:
#    ValueError" and the 503/429 is not retried (a webhook event is failed for good).
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [503, 429])
def test_an_odd_retry_after_does_not_turn_a_retryable_answer_into_a_final_failure(
    peers: Callable[..., RawPeer], code: int
) -> None:
    peer = peers([(b"HTTP/1.1 %d X\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n\r\n" % code, 0)])
    result = http.call("POST", peer.url(), headers={}, body=b"{}", timeout=5)
    assert result.status_code == code
    assert (result.error, result.error_kind) == ("", ""), result.error
    assert result.retryable


# --------------------------------------------------------------------------------------------
# I. A response whose body breaks after the status line (connection dropped mid-body, bad
#    chunk framing, undecodable gzip) is "invalid request: ChunkedEncodingError /
#    ContentDecodingError", error_kind "invalid": never retried, even for a 503 (a network blip
#    ends the task "(not retried)"; a webhook event is failed for good at its first attempt).
#    The request was fine; it is the answer that broke: a connection error, retried.
# --------------------------------------------------------------------------------------------

BROKEN_BODIES = {
    "cut fixed-length": b"Content-Length: 10\r\nConnection: close\r\n\r\nabcd",
    "cut chunked": b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n",
    "bad chunk size": b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabcd\r\n0\r\n\r\n",
    "bad gzip": b"Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd",
}


@pytest.mark.parametrize("kind", sorted(BROKEN_BODIES))
def test_a_503_whose_body_breaks_is_still_retried(peers: Callable[..., RawPeer], kind: str) -> None:
    peer = peers([(b"HTTP/1.1 503 Busy\r\n" + BROKEN_BODIES[kind], 0)])
    result = http.call("POST", peer.url(), headers={}, body=b"{}", timeout=5)
    assert not result.error.startswith("invalid request"), result.error
    assert result.retryable, f"{result.error} ({result.error_kind}) is not retried"


@pytest.mark.django_db
def test_a_webhook_receiver_dropping_the_connection_mid_503_is_retried_not_failed(
    team: Team, peers: Callable[..., RawPeer]
) -> None:
    receiver = peers([(b"HTTP/1.1 503 Busy\r\n" + BROKEN_BODIES["cut fixed-length"], 0)])
    task = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", on_complete_url=receiver.url("/hook"))
    ).task
    services.cancel_task(team, task.pk)
    delivery = WebhookDelivery.objects.get(task=task)
    status = tasks.deliver_webhook(str(delivery.pk))
    delivery.refresh_from_db()
    assert status == DeliveryStatus.PENDING, (
        f"{status}: {delivery.last_error} after one attempt (schedule not used)"
    )


# --------------------------------------------------------------------------------------------
# J. At create, check_url(resolve_host=True) asks the resolver with no time limit: a name whose
#    nameserver never answers holds the API request (and its web worker) for as long as the
#    resolver hangs. The worker side bounds the same lookup; the API side does not.
# --------------------------------------------------------------------------------------------


def test_create_is_not_held_by_a_hanging_name_resolution(client: APIClient) -> None:
    def resolver(host: str, port: int) -> list[str]:
        time.sleep(4)
        return ["93.184.216.34"]

    previous = http.set_resolver(resolver)
    try:
        with override_settings(ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": False, "CONNECT_TIMEOUT": 1}):
            started = time.monotonic()
            response = client.post(
                "/v1/tasks", {"targetUrl": "https://slow-dns.example.com/hook"}, format="json"
            )
            took = time.monotonic() - started
    finally:
        http.set_resolver(previous)
    assert response.status_code in (201, 400)
    assert took < 2, f"POST /v1/tasks took {took:.1f} s waiting for DNS"


# --------------------------------------------------------------------------------------------
# K. "Credentials" across origins is a name denylist (SECRET_HEADER_RE). Real credential
#    headers it misses go to whatever origin a target redirects to: Azure API Management's
#    Ocp-Apim-Subscription-Key, Azure Functions' x-functions-key, *-Key headers in general.
#    (They are also shown unredacted in GET /v1/tasks.) A task's own headers were written for
#    its target's origin; across origins only a short allowlist should follow.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Ocp-Apim-Subscription-Key", "x-functions-key", "X-Access-Key", "X-Shared-Key"]
)
def test_a_key_header_does_not_follow_a_redirect_to_another_origin(name: str) -> None:
    kept = http.headers_for_redirect(
        {name: "s3cret", "Content-Type": "application/json"},
        "https://api.example.com/hook",
        "https://attacker.example.net/steal",
    )
    assert name not in kept, f"{name} went to another origin"


@pytest.mark.django_db
def test_one_teams_session_cookie_reaches_another_teams_task_through_the_worker(
    peers: Callable[..., RawPeer],
) -> None:
    """Case A end to end through ``execute_task`` (what a worker process runs, task after task,
    on one thread): team A's target sets a cookie, team B's task to the same host carries it."""
    peer = peers(
        [
            (
                b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=team-a-session; Path=/\r\n"
                b"Content-Length: 0\r\n\r\n",
                0,
            )
        ]
    )
    team_a = services.get_or_create_team("team-a")[0]
    team_b = services.get_or_create_team("team-b")[0]
    task_a = services.create_task(team_a, TaskSpec(target_url=peer.url("/a"))).task
    task_b = services.create_task(team_b, TaskSpec(target_url=peer.url("/b"))).task
    assert tasks.execute_task(str(task_a.pk)) == "completed"
    assert tasks.execute_task(str(task_b.pk)) == "completed"
    request_b = peer.conns[-1].request
    assert b"POST /b " in request_b
    assert b"team-a-session" not in request_b, (
        f"team B's call carried team A's cookie: {request_b!r}"
    )


@pytest.mark.django_db
def test_a_webhook_receiver_that_accepted_with_2xx_but_cut_its_body_is_not_failed(
    team: Team, peers: Callable[..., RawPeer]
) -> None:
    """The receiver answered 200 (it has the event); its response body broke off. Today the
    event is marked ``failed`` for good ("invalid request: ChunkedEncodingError"); a task
    whose target does the same ends ``failed (not retried)`` although the target did the work."""
    receiver = peers([(b"HTTP/1.1 200 OK\r\n" + BROKEN_BODIES["cut fixed-length"], 0)])
    task = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", on_complete_url=receiver.url("/hook"))
    ).task
    services.cancel_task(team, task.pk)
    delivery = WebhookDelivery.objects.get(task=task)
    status = tasks.deliver_webhook(str(delivery.pk))
    delivery.refresh_from_db()
    assert status == DeliveryStatus.DELIVERED, f"{status}: {delivery.last_error}"
