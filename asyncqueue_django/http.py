"""Every outbound byte: one attempt of a call, bounded by its deadline, guarded against SSRF at
connect time, with redirects, caps and a result that never raises.

The URL and address rules themselves live in ``urlpolicy.py`` (re-exported here); this module
applies them to every hop and to every address it connects to.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.ssl_ import create_urllib3_context

from asyncqueue_django import __version__
from asyncqueue_django.backoff import parse_retry_after
from asyncqueue_django.conf import app_settings
from asyncqueue_django.urlpolicy import (
    ALLOWED_SCHEMES,
    CROSS_ORIGIN_HEADERS,
    MAX_URL_LENGTH,
    UnsafeURL,
    address_problem,
    check_url,
    cross_origin_headers,
    default_port,
    resolve,
    set_resolver,
    split_url,
)

__all__ = [
    "ALLOWED_SCHEMES",
    "CROSS_ORIGIN_HEADERS",
    "MAX_URL_LENGTH",
    "BlockedAddress",
    "CallResult",
    "UnsafeURL",
    "address_problem",
    "call",
    "check_url",
    "cross_origin_headers",
    "default_port",
    "headers_for_redirect",
    "origin",
    "parse_retry_after",
    "redirect_refusal",
    "resolve",
    "session",
    "set_resolver",
    "split_url",
]


# --------------------------------------------------------------------------------------------
# Outbound calls
# --------------------------------------------------------------------------------------------


USER_AGENT = f"asyncqueue-django/{__version__} (+https://pypi.org/project/asyncqueue-django/)"
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_CODES = frozenset({408, 425, 429})
RETRY_AFTER_CODES = frozenset({429, 503})


_local = threading.local()


class BlockedAddress(Exception):
    """Raised before connecting when the host resolves to an address that is not allowed."""


class DeadlinePassed(TimeoutError):
    """The attempt's wall-clock deadline passed while it was still sending or receiving."""


def _attempt_deadline() -> float | None:
    deadline: float | None = getattr(_local, "deadline", None)
    return deadline


def _bound(sock: socket.socket, configured: float | None) -> None:
    """Before a blocking socket operation inside :func:`call`: give it at most what is left of
    the attempt's deadline (or its own configured timeout, if that is shorter).

    A per-operation timeout alone does not bound an attempt: a target that sends one byte every
    half second never trips a 30 s read timeout. Bounding every operation by the time left does,
    whatever the framing (status line, headers, fixed-length, chunked or close-delimited body)
    and on TLS too.
    """
    deadline = _attempt_deadline()
    if deadline is None:
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlinePassed("the attempt's deadline passed")
    bounded = remaining if configured is None else min(configured, remaining)
    socket.socket.settimeout(sock, bounded)


class _DeadlineMixin:
    """Every send and receive of the socket is bounded by the attempt's deadline."""

    _configured_timeout: float | None = None

    def settimeout(self, value: float | None) -> None:
        self._configured_timeout = value
        super().settimeout(value)  # type: ignore[misc]

    def _bounded(self) -> None:
        _bound(self, self._configured_timeout)  # type: ignore[arg-type]

    def recv(self, *args: Any, **kwargs: Any) -> bytes:
        self._bounded()
        return super().recv(*args, **kwargs)  # type: ignore[misc,no-any-return]

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        self._bounded()
        return super().recv_into(*args, **kwargs)  # type: ignore[misc,no-any-return]

    def send(self, *args: Any, **kwargs: Any) -> int:
        self._bounded()
        return super().send(*args, **kwargs)  # type: ignore[misc,no-any-return]

    def sendall(self, *args: Any, **kwargs: Any) -> None:
        self._bounded()
        super().sendall(*args, **kwargs)  # type: ignore[misc]


class _DeadlineSocket(_DeadlineMixin, socket.socket):
    """A TCP socket whose every send and receive is bounded by the attempt's deadline."""


class _DeadlineSSLSocket(_DeadlineMixin, ssl.SSLSocket):
    """The TLS counterpart of :class:`_DeadlineSocket` (handshake, reads and writes too)."""

    def do_handshake(self, *args: Any, **kwargs: Any) -> None:
        self._bounded()
        super().do_handshake(*args, **kwargs)

    def read(self, *args: Any, **kwargs: Any) -> Any:
        self._bounded()
        return super().read(*args, **kwargs)

    def write(self, *args: Any, **kwargs: Any) -> int:
        self._bounded()
        return super().write(*args, **kwargs)


def _tls_context() -> ssl.SSLContext:
    """A per-thread TLS context (urllib3's defaults, certificates verified) whose sockets are
    :class:`_DeadlineSSLSocket`s."""
    context: ssl.SSLContext | None = getattr(_local, "tls_context", None)
    if context is None:
        context = create_urllib3_context()
        context.sslsocket_class = _DeadlineSSLSocket
        context.load_default_certs()
        _local.tls_context = context
    return context


def _addresses(host: str, port: int, timeout: float) -> list[str]:
    """The addresses ``host`` stands for: itself if it is an IP literal, loopback for the
    ``localhost`` names (RFC 6761), else the resolver's answer within ``timeout`` seconds
    (see :func:`urlpolicy.resolve`)."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
        return [bare]
    except ValueError:
        pass
    name = bare.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return ["127.0.0.1", "::1"]
    found = resolve(bare, port, timeout=timeout)
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return list(dict.fromkeys(found))


class _GuardMixin:
    """Resolves the host itself, checks every address it stands for, and only then connects,
    to the checked address: nothing is connected to (not even a port probed) when any address
    is refused, and a second, different DNS answer cannot slip in between check and connect.
    The socket is a :class:`_DeadlineSocket`."""

    host: str
    port: int
    timeout: Any
    socket_options: Any
    source_address: Any

    def _time_left(self, cap: float) -> float:
        """``cap`` seconds, or less if the attempt's deadline is nearer; raises once it passed."""
        deadline = _attempt_deadline()
        if deadline is None:
            return cap
        left = deadline - time.monotonic()
        if left <= 0:
            raise ConnectTimeoutError(self, "the attempt's deadline passed while connecting")
        return min(cap, left)

    def _new_conn(self) -> socket.socket:
        cap = (
            float(self.timeout)
            if isinstance(self.timeout, int | float)
            else float(app_settings.CONNECT_TIMEOUT)
        )
        host = self.host
        try:
            addresses = _addresses(host, self.port, self._time_left(cap))
        except socket.gaierror as exc:
            raise NameResolutionError(host, self, exc) from exc  # type: ignore[arg-type]
        except (TimeoutError, OSError, UnicodeError) as exc:
            raise ConnectTimeoutError(self, f"could not resolve {host} in time ({exc})") from exc
        if not app_settings.ALLOW_PRIVATE_TARGETS:
            for address in addresses:
                problem = address_problem(address)
                if problem:
                    raise BlockedAddress(f"host {host} is not allowed: {problem}")
        error: OSError | None = None
        for address in addresses:
            family, _, _, _, sockaddr = socket.getaddrinfo(
                address, self.port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )[0]
            sock = _DeadlineSocket(family, socket.SOCK_STREAM)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if self.source_address:
                    sock.bind(self.source_address)
                # Each address gets what is left of the deadline, not a fresh connect timeout:
                # a name with many unanswering addresses cannot stretch the attempt.
                sock.settimeout(self._time_left(cap))
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
            except BaseException:
                sock.close()
                raise
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(self, f"connection to {host} timed out") from error
        message = f"Failed to establish a new connection: {error}"
        raise NewConnectionError(self, message)  # type: ignore[arg-type]


class GuardedHTTPConnection(_GuardMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardMixin, HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("ssl_context") is None:
            kwargs["ssl_context"] = _tls_context()
        super().__init__(*args, **kwargs)


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """Connections that check their destination before connecting and whose every byte is
    bounded by the attempt's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }


def session() -> requests.Session:
    """A per-thread session (connection reuse) that keeps no cookies and ignores proxy
    environment variables (a proxy would make the guard check the proxy's address instead of
    the target's)."""
    s: requests.Session | None = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        s.trust_env = False
        # No cookie state between calls: a cookie one target sets must never reach another
        # task's call (another team's, or another origin's after a redirect).
        s.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        adapter = GuardedAdapter(pool_connections=16, pool_maxsize=16, max_retries=0)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        _local.session = s
    return s


@dataclass
class CallResult:
    """What one attempt produced. ``status_code`` is None when no response arrived."""

    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False  # incomplete body: over MAX_RESPONSE_BYTES, cut by the peer, or late
    duration_ms: int = 0
    error: str = ""
    # "", "timeout", "connection", "blocked", "redirect", "invalid", "vault" (a header's vault
    # token was revoked; not retried), or "internal" (the request could not be made at all;
    # retried like a connection error).
    error_kind: str = ""
    retry_after: float | None = None
    final_url: str = ""

    @property
    def succeeded(self) -> bool:
        """2xx, or a 3xx that was not followed (no ``Location``, or 304): a 3xx counts as
        success; redirects with a ``Location`` are followed before this is asked."""
        return self.status_code is not None and 200 <= self.status_code < 400 and not self.error

    @property
    def retryable(self) -> bool:
        """408, 425, 429, 5xx, connection errors and timeouts are retried; other 4xx are not."""
        if self.error_kind in ("timeout", "connection", "internal"):
            return True
        if self.error_kind:
            return False
        code = self.status_code or 0
        return code in RETRYABLE_CODES or code >= 500

    def describe(self) -> str:
        """A short readable reason: "HTTP 503", "connection refused", "timeout after 30s"."""
        if self.error:
            return self.error
        return f"HTTP {self.status_code}"


@dataclass
class PollResult(CallResult):
    """A provider poll: the poll's own answer, and the result fetched from the result URL
    when the poll said the job is done (None when there was nothing to fetch)."""

    fetched: CallResult | None = None


def _read_capped(response: requests.Response, cap: int) -> tuple[bytes, bool]:
    """The body, at most ``cap`` bytes, and whether it is incomplete.

    Once the status line and headers have arrived, the answer is the status: a body the peer
    cuts short (a dropped connection, broken chunk framing, a bad encoding) or that is still
    arriving at the attempt's deadline is kept as far as it came and marked incomplete, never
    turned into an error. So a target that answered ``2xx`` and then dripped or broke its body
    is not called a second time, and a ``503`` with a broken body is still retried as a 503.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=16_384):
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                return b"".join(chunks)[:cap], True
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError):
        return b"".join(chunks), True
    return b"".join(chunks), False


def _connection_error_text(exc: Exception) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "host not found"
    if "temporary failure in name resolution" in text or "failed to resolve" in text:
        return "host not found"
    if "certificate" in text or "ssl" in text:
        return "TLS error"
    if "reset" in text:
        return "connection reset"
    if "remote end closed" in text or "remotedisconnected" in text:
        return "connection closed without a response"
    return "connection error"


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``url``, lower-cased, with the scheme's default port."""
    parts = split_url(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), default_port(parts)


def redirect_refusal(from_url: str, to_url: str) -> str | None:
    """Why a redirect from ``from_url`` to ``to_url`` is not followed, or None.

    A redirect from https to http is refused: the request, body and all, would travel in clear
    text. (The target's URL rules are checked separately, hop by hop.)
    """
    if origin(from_url)[0] == "https" and origin(to_url)[0] == "http":
        return "a redirect from https to http is not followed"
    return None


def headers_for_redirect(
    headers: dict[str, str],
    from_url: str,
    to_url: str,
    secret_headers: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """The headers that may follow a redirect from ``from_url`` to ``to_url``.

    Within one origin, all of them. When the scheme, host or port changes, only the headers
    known to carry no credential (:data:`CROSS_ORIGIN_HEADERS`: content negotiation, the
    User-Agent, trace context, the service's own task and signature headers) go along. Every
    other header of the task is dropped — ``Authorization``, ``Cookie`` and the secret-looking
    names, but also any custom header, since no list of names can tell a credential (an
    ``Ocp-Apim-Subscription-Key``, an ``X-Functions-Key``) from a harmless one. A header named
    in ``secret_headers`` (lower-case: those whose value came from the Token Vault) never goes,
    whatever its name.
    """
    if origin(from_url) == origin(to_url):
        return headers
    return cross_origin_headers(headers, secret_headers)


def call(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
    secret_headers: frozenset[str] = frozenset(),
) -> CallResult:
    """Make one attempt and never raise for anything the network or the peer does (it is in
    the result).

    ``timeout`` (seconds) is the attempt's wall-clock deadline: name resolution, connect, TLS,
    sending, the status line, headers and body of every redirect hop all happen within it
    (each TCP connect also within ``CONNECT_TIMEOUT``). Redirects (at most ``MAX_REDIRECTS``):
    301, 302, 307 and 308 repeat the request, method and body included, at the ``Location``;
    303 ("see other": the request was processed) fetches the ``Location`` with a ``GET``.
    Every hop's URL is checked, its host resolved and every address checked before any
    connection is made, and only headers known to carry no credential follow a redirect to
    another origin, never one named in ``secret_headers`` (:func:`headers_for_redirect`).
    """
    started = time.monotonic()
    deadline = started + timeout
    cap = app_settings.MAX_RESPONSE_BYTES
    result = CallResult()
    current_url, current_method, current_body = url, method, body
    current_headers = {"User-Agent": USER_AGENT, **headers}
    _local.deadline = deadline
    redirected = False
    try:
        for hop in range(app_settings.MAX_REDIRECTS + 1):
            check_url(current_url, resolve_host=False)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlinePassed("the attempt's deadline passed")
            response = session().request(
                current_method,
                current_url,
                headers=current_headers,
                data=current_body,
                timeout=(min(app_settings.CONNECT_TIMEOUT, remaining), remaining),
                allow_redirects=False,
                stream=True,
            )
            try:
                if response.status_code in REDIRECT_CODES and response.headers.get("Location"):
                    if hop == app_settings.MAX_REDIRECTS:
                        result.status_code = response.status_code
                        result.error = f"too many redirects (more than {hop})"
                        result.error_kind = "redirect"
                        break
                    redirected = True
                    next_url = urljoin(current_url, response.headers["Location"])
                    refusal = redirect_refusal(current_url, next_url)
                    if refusal:
                        raise UnsafeURL(refusal)
                    current_headers = headers_for_redirect(
                        current_headers, current_url, next_url, secret_headers
                    )
                    if response.status_code == 303 and current_method not in ("GET", "HEAD"):
                        current_method, current_body = "GET", None
                        current_headers = {
                            k: v for k, v in current_headers.items() if k.lower() != "content-type"
                        }
                    current_url = next_url
                    continue
                result.status_code = response.status_code
                result.headers = dict(response.headers)
                result.body, result.truncated = _read_capped(response, cap)
                result.final_url = current_url
                if response.status_code in RETRY_AFTER_CODES:
                    result.retry_after = parse_retry_after(response.headers.get("Retry-After"))
                break
            finally:
                response.close()
    except (UnsafeURL, BlockedAddress) as exc:
        where = "redirect blocked" if redirected else "blocked"
        result.error, result.error_kind = f"{where}: {exc}", "blocked"
    except requests.exceptions.ConnectTimeout:
        result.error, result.error_kind = "connect timeout", "timeout"
    except (requests.exceptions.ReadTimeout, TimeoutError):
        result.error, result.error_kind = f"timeout after {timeout:g}s", "timeout"
    except requests.exceptions.ConnectionError as exc:
        blocked = _caused_by(exc, BlockedAddress)
        if blocked is not None:
            where = "redirect blocked" if redirected else "blocked"
            result.error, result.error_kind = f"{where}: {blocked}", "blocked"
        else:
            result.error, result.error_kind = _connection_error_text(exc), "connection"
    except requests.exceptions.RequestException as exc:
        result.error, result.error_kind = f"invalid request: {type(exc).__name__}", "invalid"
    except (ValueError, UnicodeError) as exc:
        # What http.client refuses to send (a header it cannot encode, say): not retried.
        result.error, result.error_kind = f"invalid request: {type(exc).__name__}", "invalid"
    finally:
        _local.deadline = None
    # A socket timeout set to "what is left" may fire a hair before the deadline by the clock.
    if result.error_kind in ("timeout", "connection", "invalid") and (
        time.monotonic() >= deadline - 0.05
    ):
        # However the library reported it, the attempt ran out of time.
        result.error, result.error_kind = f"timeout after {timeout:g}s", "timeout"
        result.status_code, result.headers, result.body = None, {}, b""
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def _caused_by(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of ``kind`` in ``exc``'s chain of causes and contexts (requests and
    urllib3 wrap what a connection raised once or twice)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        stack.extend([current.__cause__, current.__context__])
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    return None
