"""Rate limits. Rates come from ``app_settings``; the host never edits ``REST_FRAMEWORK``.

A fixed-window counter in Django's cache (one ``add`` + one ``incr`` per request: an atomic
``INCR`` on Redis or Memcached), rather than DRF's ``SimpleRateThrottle``, which stores every
request's timestamp and rewrites that list on each request — too costly at thousands a minute.
Each throttle leaves ``(limit, remaining, reset_epoch)`` on the request, and the views turn it
into ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` headers.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from asyncqueue_django.conf import app_settings
from asyncqueue_django.models import ApiKey

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RATE_ATTR = "asyncqueue_rate_limit"


def parse_rate(rate: str) -> tuple[int, int]:
    """``"600/min"`` → ``(600, 60)``."""
    num, period = rate.split("/")
    return int(num), PERIODS[period[0]]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in ``text`` (``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:443``,
    ``2001:db8::1``), IPv4-mapped IPv6 unwrapped to IPv4; None if it is not one."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: list[str]) -> bool:
    return any(
        ip.version == net.version and ip in net
        for net in (ipaddress.ip_network(n, strict=False) for n in networks)
    )


def client_address(request: Any) -> str:
    """The address of the client behind ``request``, for every per-IP limit.

    ``REMOTE_ADDR``, unless that is one of ``TRUSTED_PROXIES``: then ``X-Forwarded-For`` is
    read from the right (each proxy appends the address it received the request from), past
    every trusted proxy, and the first address not among them is the client. Entries left of
    it were written by the client itself and are never believed; an entry that is not an IP
    address (ports and brackets are understood) stops the walk. Without trusted proxies the
    header is ignored, so a client cannot pick its own rate-limit bucket. IPv4-mapped IPv6
    addresses (a dual-stack socket's view of an IPv4 peer) count as the IPv4 address.
    """
    remote_text = str(request.META.get("REMOTE_ADDR") or "")
    remote = _ip(remote_text)
    if remote is None:
        return remote_text
    networks = app_settings.TRUSTED_PROXIES
    if not networks or not _trusted(remote, networks):
        return str(remote)
    client = remote
    forwarded = [a for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    for entry in reversed(forwarded):
        ip = _ip(entry)
        if ip is None:
            break
        client = ip
        if not _trusted(ip, networks):
            break
    return str(client)


def client_bucket(address: str) -> str:
    """The rate-limit bucket of a client address: the address itself for IPv4, its /64 network
    for IPv6 (one host usually holds a whole /64 and can pick a new address per request)."""
    ip = _ip(address)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip) if ip is not None else address


class FixedWindowThrottle(BaseThrottle):
    scope = "asyncqueue"
    setting = ""

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def get_ident_key(self, request: Request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: Request, view: Any) -> bool:
        rate: str | None = getattr(app_settings, self.setting)
        ident = self.get_ident_key(request)
        if rate is None or ident is None:
            return True
        limit, duration = parse_rate(rate)
        now = time.time()
        window = int(now // duration)
        key = f"asyncqueue:rl:{self.scope}:{ident}:{duration}:{window}"
        # A request may cost more than one (a batch counts one per item).
        cost = getattr(view, "throttle_cost", lambda request: 1)(request)
        cache.add(key, 0, timeout=duration + 1)
        try:
            count = cache.incr(key, cost)
        except ValueError:  # evicted between add and incr
            cache.set(key, cost, timeout=duration + 1)
            count = cost
        reset = (window + 1) * duration
        setattr(request, RATE_ATTR, (limit, max(0, limit - count), reset))
        if count > limit:
            self.wait_seconds = reset - now
            return False
        return True

    def wait(self) -> float | None:
        return self.wait_seconds


class TeamRateThrottle(FixedWindowThrottle):
    """Every API-key request counts against its team's ``RATE_LIMIT``."""

    scope = "team"
    setting = "RATE_LIMIT"

    def get_ident_key(self, request: Request) -> str | None:
        key = request.auth
        return str(key.team_id) if isinstance(key, ApiKey) else None


class SignalIPThrottle(FixedWindowThrottle):
    """Signals carry no API key: limit them per client IP (``SIGNAL_RATE_LIMIT``), so tokens
    cannot be guessed at speed (they have 256 bits of entropy; this keeps the endpoint cheap)."""

    scope = "signal-ip"
    setting = "SIGNAL_RATE_LIMIT"

    def get_ident_key(self, request: Request) -> str | None:
        return client_bucket(client_address(request))


class CallbackIPThrottle(SignalIPThrottle):
    """Provider callbacks carry no API key either: limited per client IP
    (``CALLBACK_RATE_LIMIT``), so callback ids cannot be guessed at speed."""

    scope = "callback-ip"
    setting = "CALLBACK_RATE_LIMIT"


def rate_limit_headers(request: Any) -> dict[str, str]:
    info = getattr(request, RATE_ATTR, None)
    if info is None:
        return {}
    limit, remaining, reset = info
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(reset),
    }
