"""``http.py`` against a real local HTTP server: classification, redirects, caps, the guard."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.test import override_settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from asyncqueue_django import http

LOCAL_ONLY = {"ALLOW_PRIVATE_TARGETS": False, "ALLOWED_NETWORKS": ["127.0.0.1/32"]}
GUARDED = {"ALLOW_PRIVATE_TARGETS": False}


def call(url: str, method: str = "POST", body: bytes | None = b"{}", timeout: float = 5):
    return http.call(
        method, url, headers={"Content-Type": "application/json"}, body=body, timeout=timeout
    )


# ---------------------------------------------------------------- classification (the lifecycle)


@pytest.mark.parametrize(
    ("status", "succeeded", "retryable"),
    [
        (200, True, False),
        (201, True, False),
        (204, True, False),
        (304, True, False),
        (400, False, False),
        (401, False, False),
        (403, False, False),
        (404, False, False),
        (409, False, False),
        (410, False, False),
        (422, False, False),
        (408, False, True),
        (425, False, True),
        (429, False, True),
        (500, False, True),
        (502, False, True),
        (503, False, True),
        (504, False, True),
    ],
)
def test_status_classification(
    httpserver: HTTPServer, status: int, succeeded: bool, retryable: bool
) -> None:
    httpserver.expect_request("/t").respond_with_data("x", status=status)
    result = call(httpserver.url_for("/t"))
    assert result.status_code == status
    assert result.succeeded is succeeded
    assert result.retryable is retryable
    assert result.describe() == f"HTTP {status}"


def test_connection_refused_is_retryable() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = call(f"http://127.0.0.1:{port}/")
    assert result.status_code is None
    assert result.error == "connection refused"
    assert result.retryable


def test_read_timeout_is_retryable(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.5)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    result = call(httpserver.url_for("/slow"), timeout=0.5)
    assert result.error == "timeout after 0.5s"
    assert result.error_kind == "timeout"
    assert result.retryable
    # The test server is single-threaded: let it finish the slow handler before the next test.
    deadline = time.monotonic() + 5
    while not httpserver.log and time.monotonic() < deadline:
        time.sleep(0.05)


def test_request_carries_method_body_and_user_agent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/echo", method="PATCH", data=b'{"a":1}').respond_with_data("ok")
    result = http.call(
        "PATCH", httpserver.url_for("/echo"), headers={"X-A": "1"}, body=b'{"a":1}', timeout=5
    )
    assert result.status_code == 200
    request, _ = httpserver.log[0]
    assert request.headers["User-Agent"] == http.USER_AGENT
    assert request.headers["X-A"] == "1"


def test_response_body_is_capped(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/big").respond_with_data(b"a" * 200_000)
    with override_settings(
        ASYNCQUEUE={
            "ALLOW_PRIVATE_TARGETS": True,
            "MAX_RESPONSE_BYTES": 4096,
            "MAX_STORED_RESPONSE_BYTES": 1024,
        }
    ):
        result = call(httpserver.url_for("/big"))
    assert result.truncated
    assert len(result.body) == 4096


# ---------------------------------------------------------------- Retry-After


def test_retry_after_seconds(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/rl").respond_with_data("", status=429, headers={"Retry-After": "7"})
    result = call(httpserver.url_for("/rl"))
    assert result.retry_after == 7.0
    assert result.retryable


def test_retry_after_http_date_on_503(httpserver: HTTPServer) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    httpserver.expect_request("/m").respond_with_data(
        "", status=503, headers={"Retry-After": format_datetime(when, usegmt=True)}
    )
    result = call(httpserver.url_for("/m"))
    assert result.retry_after is not None
    assert 100 <= result.retry_after <= 121


def test_retry_after_ignored_on_other_codes_and_garbage() -> None:
    assert http.parse_retry_after("soon") is None
    assert http.parse_retry_after(None) is None
    assert http.parse_retry_after("  12 ") == 12.0


# ---------------------------------------------------------------- redirects


def test_redirects_are_followed_and_303_becomes_get(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a", method="POST").respond_with_data(
        "", status=303, headers={"Location": "/b"}
    )
    httpserver.expect_request("/b", method="GET").respond_with_data("done")
    result = call(httpserver.url_for("/a"))
    assert result.status_code == 200
    assert result.body == b"done"
    assert [r.method for r, _ in httpserver.log] == ["POST", "GET"]


def test_302_after_put_keeps_the_method(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a", method="PUT").respond_with_data(
        "", status=302, headers={"Location": "/b"}
    )
    httpserver.expect_request("/b", method="PUT").respond_with_data("put again")
    result = http.call("PUT", httpserver.url_for("/a"), headers={}, body=b"x", timeout=5)
    assert result.body == b"put again"


def test_redirect_without_location_counts_as_success(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/r").respond_with_data("moved?", status=302)
    result = call(httpserver.url_for("/r"))
    assert (result.status_code, result.succeeded) == (302, True)


def test_307_keeps_method_and_body(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a").respond_with_data("", status=307, headers={"Location": "/b"})
    httpserver.expect_request("/b", method="POST", data=b"{}").respond_with_data("kept")
    assert call(httpserver.url_for("/a")).body == b"kept"


def test_redirect_limit(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/loop").respond_with_data(
        "", status=302, headers={"Location": "/loop"}
    )
    with override_settings(ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": True, "MAX_REDIRECTS": 3}):
        result = call(httpserver.url_for("/loop"))
    assert result.error == "too many redirects (more than 3)"
    assert not result.retryable
    assert len(httpserver.log) == 4


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/internal",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
        "http://[fd00::1]/",
        "http://100.64.0.1/",
        "file:///etc/passwd",
    ],
)
def test_redirect_to_a_private_address_is_blocked_before_connecting(
    httpserver: HTTPServer, location: str
) -> None:
    httpserver.expect_request("/r").respond_with_data(
        "", status=302, headers={"Location": location}
    )
    with override_settings(ASYNCQUEUE=LOCAL_ONLY):
        result = call(httpserver.url_for("/r").replace("localhost", "127.0.0.1"))
    assert len(httpserver.log) == 1
    assert result.error.startswith("redirect blocked:")
    assert result.error_kind == "blocked"
    assert not result.retryable


def test_credentials_are_dropped_on_cross_host_redirect(httpserver: HTTPServer) -> None:
    other = httpserver.url_for("/b").replace("localhost", "127.0.0.1")
    first = httpserver.url_for("/a").replace("127.0.0.1", "localhost")
    httpserver.expect_request("/a").respond_with_data("", status=307, headers={"Location": other})
    httpserver.expect_request("/b").respond_with_data("ok")
    http.call("POST", first, headers={"Authorization": "Bearer s3cret"}, body=b"", timeout=5)
    (first_req, _), (second_req, _) = httpserver.log
    assert first_req.headers.get("Authorization") == "Bearer s3cret"
    assert "Authorization" not in second_req.headers


# ---------------------------------------------------------------- the SSRF guard


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "not a public"),
        ("http://169.254.169.254/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd12:3456::1]/", "private"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "240.0.0.1 is a"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[64:ff9b::a00:1]/", "private"),
        ("http://2130706433/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://0x7f.0.0.1/", "loopback"),
        ("http://localhost/", "loopback"),
    ],
)
def test_guard_refuses_non_public_hosts(url: str, reason: str) -> None:
    with override_settings(ASYNCQUEUE=GUARDED), pytest.raises(http.UnsafeURL, match=reason):
        http.check_url(url)


@pytest.mark.parametrize(
    "url", ["http://2130706433/", "http://0177.0.0.1/", "http://0x7f.1/", "http://127.1/"]
)
def test_numeric_spellings_are_refused_without_a_lookup(url: str) -> None:
    """A poll URL template is checked without name resolution (its host may be a sample); a
    numeric host needs none: it is the address it spells (as the resolver reads it)."""
    with override_settings(ASYNCQUEUE=GUARDED), pytest.raises(http.UnsafeURL, match="loopback"):
        http.check_url(url, resolve_host=False)
    with override_settings(ASYNCQUEUE=GUARDED):
        http.check_url("http://deadbeef.example/", resolve_host=False)  # a name: let through


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("http://user:pw@example.com/", "credentials"),
        ("http:///nohost", "no host"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com:99999/", "malformed"),
        ("http://" + "a" * 2050 + ".com/", "longer than"),
    ],
)
def test_guard_refuses_malformed_urls_even_when_private_targets_are_allowed(
    url: str, reason: str
) -> None:
    with (
        override_settings(ASYNCQUEUE={"ALLOW_PRIVATE_TARGETS": True}),
        pytest.raises(http.UnsafeURL, match=reason),
    ):
        http.check_url(url)


@pytest.fixture
def fake_dns() -> Iterator[dict[str, list[str]]]:
    table: dict[str, list[str]] = {}

    def resolver(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("not found")
        return table[host]

    previous = http.set_resolver(resolver)
    yield table
    http.set_resolver(previous)


def test_dns_name_resolving_to_private_address_is_refused(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["internal.example.com"] = ["93.184.216.34", "10.0.0.5"]
    fake_dns["good.example.com"] = ["93.184.216.34"]
    with override_settings(ASYNCQUEUE=GUARDED):
        with pytest.raises(http.UnsafeURL, match=r"10\.0\.0\.5 is a private"):
            http.check_url("https://internal.example.com/hook")
        http.check_url("https://good.example.com/hook")
        http.check_url("https://unresolvable.example.com/")  # checked again at connect time


def test_public_addresses_pass() -> None:
    with override_settings(ASYNCQUEUE=GUARDED):
        http.check_url("http://93.184.216.34/")
        http.check_url("https://[2606:2800:220:1:248:1893:25c8:1946]/")


def test_allowed_networks_exempt_only_those_networks() -> None:
    with override_settings(ASYNCQUEUE={"ALLOWED_NETWORKS": ["10.20.0.0/16"]}):
        http.check_url("http://10.20.3.4/")
        with pytest.raises(http.UnsafeURL):
            http.check_url("http://10.21.0.1/")


def test_connect_time_guard_checks_the_address_actually_connected_to(
    httpserver: HTTPServer,
) -> None:
    """The create-time check passes (no name resolution at call time), but the socket's peer is
    loopback: the connection is refused before any byte is sent (DNS rebinding defence)."""
    httpserver.expect_request("/x").respond_with_data("should not be reached")
    url = httpserver.url_for("/x").replace("127.0.0.1", "localhost")
    with override_settings(ASYNCQUEUE=GUARDED):
        result = call(url)
    assert result.error_kind == "blocked"
    assert "loopback" in result.error
    assert not result.retryable
    assert httpserver.log == []
