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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from asyncqueue_django import __version__
from asyncqueue_django.conf import app_settings

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
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


class BlockedAddress(Exception):
    """Raised at connect time when the peer address is not allowed (DNS rebinding guard)."""


class _GuardMixin:
    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        if not app_settings.ALLOW_PRIVATE_TARGETS:
            peer = sock.getpeername()[0]
            problem = address_problem(peer)
            if problem:
                sock.close()
                raise BlockedAddress(f"connection to {problem} refused")
        return sock


class GuardedHTTPConnection(_GuardMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardMixin, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """Checks the address actually connected to, after DNS resolution, on every new socket."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }


_local = threading.local()


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
    error_kind: str = ""  # "", "timeout", "connection", "blocked", "redirect", "invalid"
    retry_after: float | None = None
    final_url: str = ""

    @property
    def succeeded(self) -> bool:
        """2xx, or a 3xx that was not followed (no ``Location``, or 304): the lifecycle counts
        3xx as success; redirects with a ``Location`` are followed before this is asked."""
        return self.status_code is not None and 200 <= self.status_code < 400 and not self.error

    @property
    def retryable(self) -> bool:
        """408, 425, 429, 5xx, connection errors and timeouts are retried (the lifecycle)."""
        if self.error_kind in ("timeout", "connection"):
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


def _read_capped(response: requests.Response, cap: int, deadline: float) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=16_384):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            return b"".join(chunks)[:cap], True
        if time.monotonic() > deadline:
            raise requests.exceptions.ReadTimeout("response body took too long")
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


def call(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
) -> CallResult:
    """Make one attempt: the request, up to ``MAX_REDIRECTS`` hops, each hop's URL and
    connected address checked; never raises for network trouble (it is in the result)."""
    started = time.monotonic()
    deadline = started + timeout + app_settings.CONNECT_TIMEOUT
    cap = app_settings.MAX_RESPONSE_BYTES
    result = CallResult()
    current_url, current_method, current_body = url, method, body
    current_headers = {"User-Agent": USER_AGENT, **headers}
    try:
        for hop in range(app_settings.MAX_REDIRECTS + 1):
            check_url(current_url, resolve_host=False)
            remaining = max(0.1, deadline - time.monotonic())
            response = session().request(
                current_method,
                current_url,
                headers=current_headers,
                data=current_body,
                timeout=(min(app_settings.CONNECT_TIMEOUT, remaining), min(timeout, remaining)),
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
                    next_url = urljoin(current_url, response.headers["Location"])
                    if split_url(next_url).hostname != split_url(current_url).hostname:
                        current_headers = {
                            k: v
                            for k, v in current_headers.items()
                            if k.lower() not in CREDENTIAL_HEADERS
                        }
                    code = response.status_code
                    # As browsers and requests do: 303 → GET; 301/302 after a POST → GET.
                    if (code == 303 and current_method != "HEAD") or (
                        code in (301, 302) and current_method == "POST"
                    ):
                        current_method, current_body = "GET", None
                        current_headers = {
                            k: v for k, v in current_headers.items() if k.lower() != "content-type"
                        }
                    current_url = next_url
                    continue
                result.status_code = response.status_code
                result.headers = dict(response.headers)
                result.body, result.truncated = _read_capped(response, cap, deadline)
                result.final_url = current_url
                if response.status_code in RETRY_AFTER_CODES:
                    result.retry_after = parse_retry_after(response.headers.get("Retry-After"))
                break
            finally:
                response.close()
    except UnsafeURL as exc:
        result.error, result.error_kind = f"redirect blocked: {exc}", "blocked"
    except BlockedAddress as exc:
        result.error, result.error_kind = f"blocked: {exc}", "blocked"
    except requests.exceptions.ConnectTimeout:
        result.error, result.error_kind = "connect timeout", "timeout"
    except (requests.exceptions.ReadTimeout, TimeoutError):
        result.error, result.error_kind = f"timeout after {timeout:g}s", "timeout"
    except requests.exceptions.ConnectionError as exc:
        if isinstance(exc.__context__, BlockedAddress) or "BlockedAddress" in repr(exc):
            result.error, result.error_kind = f"blocked: {exc.__context__ or exc}", "blocked"
        else:
            result.error, result.error_kind = _connection_error_text(exc), "connection"
    except requests.exceptions.RequestException as exc:
        result.error, result.error_kind = f"invalid request: {type(exc).__name__}", "invalid"
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result
