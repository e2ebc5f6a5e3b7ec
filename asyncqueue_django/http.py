"""Every outbound byte: URL validation and the SSRF guard.

A URL is refused when it is not http(s), carries credentials, or its host is, or resolves to,
an address that is not public: loopback, private (RFC 1918, IPv6 ULA), shared (CGNAT),
link-local (including cloud metadata at 169.254.169.254), multicast, reserved, unspecified,
or any of those hidden inside IPv6 (IPv4-mapped, 6to4, NAT64, Teredo).
``ASYNCQUEUE["ALLOW_PRIVATE_TARGETS"]`` lifts the address rules (never the scheme rules) for
development; ``ASYNCQUEUE["ALLOWED_NETWORKS"]`` exempts chosen networks only.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.ssl_ import create_urllib3_context

from asyncqueue_django import __version__
from asyncqueue_django.conf import app_settings
from asyncqueue_django.jsonvalue import SECRET_HEADER_RE

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = ("http", "https")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class UnsafeURL(ValueError):
    """The URL may not be called; ``str(exc)`` says why, for the API's error message."""


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


_resolver: Resolver = _system_resolver


def set_resolver(resolver: Resolver | None) -> Resolver:
    """Replace the host resolver (tests use it to make names resolve to chosen addresses).

    Returns the previous one; ``None`` restores the system resolver.
    """
    global _resolver
    previous, _resolver = _resolver, resolver or _system_resolver
    return previous


def resolve(host: str, port: int) -> list[str]:
    return _resolver(host, port)


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address hidden in an IPv6 one (mapped, 6to4, NAT64, Teredo), else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
        if ip in ipaddress.IPv6Network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _allowed(ip: IPAddress) -> bool:
    for entry in app_settings.ALLOWED_NETWORKS:
        network = ipaddress.ip_network(entry, strict=False)
        if ip.version == network.version and ip in network:
            return True
    return False


def address_problem(address: str) -> str | None:
    """Why ``address`` may not be connected to, or None if it is a public unicast address
    (or inside ``ALLOWED_NETWORKS``)."""
    try:
        raw = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address} is not an IP address"
    ip = _unwrap(raw)
    if _allowed(raw) or _allowed(ip):
        return None
    checks = (
        ("is_unspecified", "an unspecified"),
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_multicast", "a multicast"),
        ("is_private", "a private"),
        ("is_reserved", "a reserved"),
    )
    for attr, label in checks:
        if getattr(ip, attr):
            return f"{ip} is {label} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def split_url(url: str) -> SplitResult:
    """Parse and check the form of ``url`` (scheme, host, no credentials); raise UnsafeURL."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UnsafeURL("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"URL is malformed ({exc})") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeURL("URL must use http or https")
    if not parts.hostname:
        raise UnsafeURL("URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("URL must not contain credentials")
    if port == 0:
        raise UnsafeURL("URL port must be 1-65535")
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise UnsafeURL("URL host is not a valid host name") from None
    return parts


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def check_url(url: str, *, resolve_host: bool = True) -> None:
    """Refuse ``url`` (UnsafeURL) if it may not be called under the current settings.

    A host that does not resolve right now is let through: the call itself will fail and be
    retried, and the address actually connected to is checked again at that moment.
    """
    parts = split_url(url)
    if app_settings.ALLOW_PRIVATE_TARGETS:
        return
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses = [host]
    except ValueError:
        name = host.lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            # RFC 6761: these names are loopback whatever a resolver says.
            addresses = ["127.0.0.1", "::1"]
        elif not resolve_host:
            return
        else:
            try:
                addresses = resolve(host, default_port(parts))
            except (OSError, UnicodeError):
                return
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise UnsafeURL(f"host {host} is not allowed: {problem}")


# --------------------------------------------------------------------------------------------
# Outbound calls
# --------------------------------------------------------------------------------------------


USER_AGENT = f"asyncqueue-django/{__version__} (+https://pypi.org/project/asyncqueue-django/)"
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_CODES = frozenset({408, 425, 429})
RETRY_AFTER_CODES = frozenset({429, 503})
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
#: The service's own signing headers (see ``signing.py``).
SIGNATURE_HEADERS = frozenset(
    {"x-asyncqueue-signature", "webhook-id", "webhook-timestamp", "webhook-signature"}
)


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


class _DeadlineSocket(socket.socket):
    """A TCP socket whose every send and receive is bounded by the attempt's deadline."""

    _configured_timeout: float | None = None

    def settimeout(self, value: float | None) -> None:
        self._configured_timeout = value
        super().settimeout(value)

    def recv(self, *args: Any, **kwargs: Any) -> bytes:
        _bound(self, self._configured_timeout)
        return super().recv(*args, **kwargs)

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        _bound(self, self._configured_timeout)
        return super().recv_into(*args, **kwargs)

    def send(self, *args: Any, **kwargs: Any) -> int:
        _bound(self, self._configured_timeout)
        return super().send(*args, **kwargs)

    def sendall(self, *args: Any, **kwargs: Any) -> None:
        _bound(self, self._configured_timeout)
        super().sendall(*args, **kwargs)


class _DeadlineSSLSocket(ssl.SSLSocket):
    """The TLS counterpart of :class:`_DeadlineSocket` (handshake, reads and writes)."""

    _configured_timeout: float | None = None

    def settimeout(self, value: float | None) -> None:
        self._configured_timeout = value
        super().settimeout(value)

    def do_handshake(self, *args: Any, **kwargs: Any) -> None:
        _bound(self, self._configured_timeout)
        super().do_handshake(*args, **kwargs)

    def read(self, *args: Any, **kwargs: Any) -> Any:
        _bound(self, self._configured_timeout)
        return super().read(*args, **kwargs)

    def write(self, *args: Any, **kwargs: Any) -> int:
        _bound(self, self._configured_timeout)
        return super().write(*args, **kwargs)

    def send(self, *args: Any, **kwargs: Any) -> int:
        _bound(self, self._configured_timeout)
        return super().send(*args, **kwargs)

    def sendall(self, *args: Any, **kwargs: Any) -> None:
        _bound(self, self._configured_timeout)
        super().sendall(*args, **kwargs)


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


_dns_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="asyncqueue-dns")


def _addresses(host: str, port: int, timeout: float) -> list[str]:
    """The addresses ``host`` stands for: itself if it is an IP literal, loopback for the
    ``localhost`` names (RFC 6761), else the resolver's answer within ``timeout`` seconds
    (``socket.getaddrinfo`` cannot be interrupted, so it runs on a small thread pool)."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
        return [bare]
    except ValueError:
        pass
    name = bare.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return ["127.0.0.1", "::1"]
    future = _dns_pool.submit(resolve, bare, port)
    try:
        found = future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise TimeoutError(f"resolving {bare} took longer than {timeout:g}s") from None
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

    def _new_conn(self) -> socket.socket:
        connect_timeout = (
            float(self.timeout)
            if isinstance(self.timeout, int | float)
            else float(app_settings.CONNECT_TIMEOUT)
        )
        deadline = _attempt_deadline()
        if deadline is not None:
            connect_timeout = min(connect_timeout, max(0.001, deadline - time.monotonic()))
        host = self.host
        try:
            addresses = _addresses(host, self.port, connect_timeout)
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
                sock.settimeout(connect_timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(self, f"connection to {host} timed out") from error
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")  # type: ignore[arg-type]


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
    """A per-thread session (connection reuse), ignoring proxy environment variables: a proxy
    would make the guard check the proxy's address instead of the target's."""
    s: requests.Session | None = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        s.trust_env = False
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
    truncated: bool = False
    duration_ms: int = 0
    error: str = ""
    # "", "timeout", "connection", "blocked", "redirect", "invalid", or "internal" (the request
    # could not be made at all; retried like a connection error).
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


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now_dt = datetime.fromtimestamp(now if now is not None else time.time(), tz=UTC)
    return max(0.0, (when - now_dt).total_seconds())


def _read_capped(response: requests.Response, cap: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=16_384):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            return b"".join(chunks)[:cap], True
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


def headers_for_redirect(headers: dict[str, str], from_url: str, to_url: str) -> dict[str, str]:
    """The headers that may follow a redirect from ``from_url`` to ``to_url``.

    Within one origin, all of them. When the scheme, host or port changes (https → http
    included), every credential is dropped: ``Authorization``, ``Proxy-Authorization``,
    ``Cookie`` and every header whose name the service treats as secret (the ones it shows as
    ``[redacted]``). The service's own signature headers stay: they sign this one request and
    reveal no secret.
    """
    if origin(from_url) == origin(to_url):
        return headers
    return {
        k: v
        for k, v in headers.items()
        if k.lower() in SIGNATURE_HEADERS
        or (k.lower() not in CREDENTIAL_HEADERS and not SECRET_HEADER_RE.search(k))
    }


def call(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
) -> CallResult:
    """Make one attempt and never raise for anything the network or the peer does (it is in
    the result).

    ``timeout`` (seconds) is the attempt's wall-clock deadline: name resolution, connect, TLS,
    sending, the status line, headers and body of every redirect hop all happen within it
    (each TCP connect also within ``CONNECT_TIMEOUT``). Redirects (at most ``MAX_REDIRECTS``):
    301, 302, 307 and 308 repeat the request, method and body included, at the ``Location``;
    303 ("see other": the request was processed) fetches the ``Location`` with a ``GET``.
    Every hop's URL is checked, its host resolved and every address checked before any
    connection is made, and credentials are dropped when the origin changes
    (:func:`headers_for_redirect`).
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
                    current_headers = headers_for_redirect(current_headers, current_url, next_url)
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
