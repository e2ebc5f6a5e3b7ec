"""Which URLs may be called: the form of a URL and the SSRF address rules. Pure: no requests,
no models, DRF or Celery, so the API validates with the very rules the worker enforces.

A URL is refused when it is not http(s), carries credentials, or its host is, or resolves to,
an address that is not public: loopback, private (RFC 1918, IPv6 ULA), shared (CGNAT),
link-local (including cloud metadata at 169.254.169.254), multicast, reserved, unspecified,
or any of those hidden inside IPv6 (IPv4-mapped, 6to4, NAT64, Teredo).
``ASYNCQUEUE["ALLOW_PRIVATE_TARGETS"]`` lifts the address rules (never the scheme rules) for
development; ``ASYNCQUEUE["ALLOWED_NETWORKS"]`` exempts chosen networks only. ``http.py``
applies the same rules again at connect time, to the addresses it actually connects to.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, urlsplit

from asyncqueue_django.conf import app_settings

MAX_URL_LENGTH = 2048
#: Most seconds :func:`check_url` waits for a name lookup (never more than ``CONNECT_TIMEOUT``)
#: before letting the URL through.
CHECK_RESOLVE_TIMEOUT = 2.0
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


def resolve(host: str, port: int, timeout: float | None = None) -> list[str]:
    """The addresses of ``host`` (through the current resolver), within ``timeout`` seconds.

    ``socket.getaddrinfo`` cannot be interrupted, so with a timeout the lookup runs on a thread
    of its own: a lookup that hangs keeps only its own thread, never one another lookup needs.
    Raises ``TimeoutError`` when the answer does not come in time, ``OSError`` when there is
    none.
    """
    if timeout is None:
        return _resolver(host, port)
    outcome: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome.append(_resolver(host, port))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="asyncqueue-dns", daemon=True).start()
    if not done.wait(max(0.0, timeout)):
        raise TimeoutError(f"resolving {host} took longer than {timeout:g}s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return list(outcome[0])


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


_NUMERIC_HOST_RE = re.compile(r"^[0-9][0-9a-fx.]*$")


def _numeric_ipv4(host: str) -> str | None:
    """The IPv4 address a numeric host spelling stands for as the resolver reads it
    (``2130706433``, ``0177.0.0.1``, ``0x7f.1``), or None for a name."""
    if not _NUMERIC_HOST_RE.fullmatch(host):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def check_url(url: str, *, resolve_host: bool = True) -> None:
    """Refuse ``url`` (UnsafeURL) if it may not be called under the current settings.

    A host that does not resolve right now (or not within ``CHECK_RESOLVE_TIMEOUT`` seconds: a
    create request is not held by a slow name server) is let through: the call itself will fail
    and be retried, and the addresses are checked again before connecting.
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
        numeric = _numeric_ipv4(name)
        if name == "localhost" or name.endswith(".localhost"):
            # RFC 6761: these names are loopback whatever a resolver says.
            addresses = ["127.0.0.1", "::1"]
        elif numeric is not None:
            addresses = [numeric]  # needs no lookup, so is refused even without one
        elif not resolve_host:
            return
        else:
            try:
                timeout = min(CHECK_RESOLVE_TIMEOUT, float(app_settings.CONNECT_TIMEOUT))
                addresses = resolve(host, default_port(parts), timeout=timeout)
            except (OSError, UnicodeError):  # TimeoutError is an OSError
                return
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise UnsafeURL(f"host {host} is not allowed: {problem}")


#: Headers that follow a redirect to another origin; every other header stays behind.
CROSS_ORIGIN_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "content-type",
        "content-language",
        "content-encoding",
        "user-agent",
        "traceparent",
        "tracestate",
        "x-asyncqueue-task-id",
        "x-asyncqueue-attempt",
        "x-asyncqueue-event",
        "x-asyncqueue-delivery-attempt",
        "x-asyncqueue-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


def cross_origin_headers(
    headers: dict[str, str], secret_headers: frozenset[str] = frozenset()
) -> dict[str, str]:
    """The ``headers`` that may go to an origin other than the one they were given for (a
    redirect, a poll URL the submit answer chose, a request of this service's own that reached
    a callback URL): those in :data:`CROSS_ORIGIN_HEADERS` and not in ``secret_headers``."""
    return {
        k: v
        for k, v in headers.items()
        if k.lower() in CROSS_ORIGIN_HEADERS and k.lower() not in secret_headers
    }
