"""Rate limits. Rates come from ``app_settings``; the host never edits ``REST_FRAMEWORK``."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from asyncqueue_django.conf import app_settings


class SignalIPThrottle(SimpleRateThrottle):
    """Signals carry no API key: limit them per client IP, so tokens cannot be guessed at
    speed (they have 256 bits of entropy; this also keeps the endpoint cheap to defend)."""

    scope = "asyncqueue-signal"

    def get_rate(self) -> str | None:
        rate: str | None = app_settings.SIGNAL_RATE_LIMIT
        return rate

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
