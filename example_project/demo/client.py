"""How the demo reaches the service: the app's Python client over HTTP, configured from
settings, and the secrets it verifies signed requests with.

``connect(base).tasks.create(...)`` creates a task (``POST /v1/tasks``), ``.tasks.get``
reads one, and ``signaller(base).signals.send`` posts to ``/v1/signals/<signalToken>``
(no API key: the token is the credential). The demo
talks HTTP to its own server on purpose (not ``asyncqueue_django.services``), so it does
exactly what a client in another process or language would.

Configuration (read when used, so ``override_settings`` works):

- ``DEMO_API_KEY``: the key the client creates tasks with (``./dev up`` passes the one it
  prints);
- ``DEMO_BASE_URL``: where the API and the demo's endpoints are reached; default: the origin
  the current request came to (``http://127.0.0.1:8000`` under ``./dev up``);
- ``DEMO_TEAM`` (default ``"demo"``) and ``DEMO_WEBHOOK_SECRETS``: see :func:`webhook_secrets`.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.utils import timezone

from asyncqueue_django.client import AsyncQueueClient, AsyncQueueError

TIMEOUT = 30.0  # seconds per request


class NotConfigured(AsyncQueueError):
    """The demo has no API key to create tasks with."""


def api_key() -> str:
    return str(getattr(settings, "DEMO_API_KEY", "") or "")


def base_url(request: HttpRequest) -> str:
    configured = str(getattr(settings, "DEMO_BASE_URL", "") or "")
    return (configured or request.build_absolute_uri("/")).rstrip("/")


def webhook_secrets() -> list[str]:
    """The secrets callbacks and webhooks are verified with.

    ``DEMO_WEBHOOK_SECRETS`` when set (what a separate receiving app would configure, from
    ``asyncqueue_webhook_secret --team demo``); otherwise the current signing secrets of team
    ``DEMO_TEAM`` read from the database, which this demo can do only because it runs in the
    same project as the service. During a rotation that is the new and the previous secret.
    """
    configured = [s for s in getattr(settings, "DEMO_WEBHOOK_SECRETS", []) if s]
    if configured:
        return configured
    from asyncqueue_django.models import Team

    name = str(getattr(settings, "DEMO_TEAM", "demo"))
    team = Team.objects.filter(name=name).first()
    if team is None:
        raise ImproperlyConfigured(
            f"No team {name!r}: create it (./dev up does) or set DEMO_WEBHOOK_SECRETS"
        )
    return team.signing_secrets(timezone.now())


def connect(base: str) -> AsyncQueueClient:
    """A client of the service at ``base`` with the demo's API key.

    Raises :class:`NotConfigured` (an :class:`AsyncQueueError`) when ``DEMO_API_KEY`` is unset.
    """
    key = api_key()
    if not key:
        raise NotConfigured("DEMO_API_KEY is not set (./dev up sets it)", code="not_configured")
    return AsyncQueueClient(base, key, timeout=TIMEOUT)


def signaller(base: str) -> AsyncQueueClient:
    """A client that only sends signals: no API key, the token is the credential."""
    return AsyncQueueClient(base, timeout=TIMEOUT)
