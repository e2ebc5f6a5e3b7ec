"""The demo's side of the seed: a small client of the real ``/v1`` REST API over HTTP.

``create_task`` is the seed's ``aq.tasks.create``, ``get_task`` its ``aq.tasks.get`` and
``send_signal`` its ``fetch('/v1/signals/' + signalToken, …)``. The demo talks HTTP to its own
server on purpose (not ``asyncqueue_django.services``), so it does exactly what a client in
another language would.

Configuration (read when used, so ``override_settings`` works):

- ``DEMO_API_KEY``: the key the client creates tasks with (``./dev up`` passes the one it
  prints);
- ``DEMO_BASE_URL``: where the API and the demo's endpoints are reached; default: the origin
  the current request came to (``http://127.0.0.1:8000`` under ``./dev up``);
- ``DEMO_TEAM`` (default ``"demo"``) and ``DEMO_WEBHOOK_SECRETS``: see :func:`webhook_secrets`.
"""

from __future__ import annotations

from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.utils import timezone

from asyncqueue_django import __version__

TIMEOUT = (5, 30)  # (connect, read) seconds
USER_AGENT = f"asyncqueue-demo/{__version__}"


class ApiError(Exception):
    """The API answered with an error, or could not be reached (``status_code`` 0)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


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


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f"HTTP {response.status_code}: {body['error']}"
    return f"HTTP {response.status_code}"


def _request(method: str, url: str, *, key: str | None, json: Any = None) -> requests.Response:
    headers = {"User-Agent": USER_AGENT}
    if key is not None:
        if not key:
            raise ApiError(0, "DEMO_API_KEY is not set (./dev up sets it)")
        headers["Authorization"] = f"Bearer {key}"
    try:
        return requests.request(method, url, json=json, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise ApiError(0, f"could not reach {url}: {exc.__class__.__name__}") from exc


def create_task(base: str, **fields: Any) -> dict[str, Any]:
    """``POST /v1/tasks`` → ``{"task": {...}, "signalToken"?: "..."}``; :class:`ApiError`
    unless 201."""
    response = _request("POST", f"{base}/v1/tasks", key=api_key(), json=fields)
    if response.status_code != 201:
        raise ApiError(response.status_code, _error_message(response))
    data: dict[str, Any] = response.json()
    return data


def get_task(base: str, task_id: str) -> dict[str, Any]:
    """``GET /v1/tasks/{id}`` → the task object; :class:`ApiError` unless 200."""
    response = _request("GET", f"{base}/v1/tasks/{task_id}", key=api_key())
    if response.status_code != 200:
        raise ApiError(response.status_code, _error_message(response))
    task: dict[str, Any] = response.json()["task"]
    return task


def send_signal(
    base: str, token: str, status: str, result: Any = None, error: str | None = None
) -> dict[str, Any]:
    """``POST /v1/signals/{token}`` (no API key: the token is the credential).

    Returns the task on 200 (applied) or 202 (recorded before the callback finished); raises
    :class:`ApiError` otherwise (404 unknown token, 409 not waiting any more, ...).
    """
    body: dict[str, Any] = {"status": status}
    if result is not None:
        body["result"] = result
    if error:
        body["error"] = error
    response = _request("POST", f"{base}/v1/signals/{token}", key=None, json=body)
    if response.status_code not in (200, 202):
        raise ApiError(response.status_code, _error_message(response))
    task: dict[str, Any] = response.json()["task"]
    return task
