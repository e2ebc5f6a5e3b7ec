"""Provider callback URLs: the one-time URL a task hands its provider (in place of the
``{asyncqueue_callback_url}`` placeholder), and what a call to it does.

The callback id is derived, never stored: an HMAC-SHA256 of the task id under a key derived
from ``SECRET_KEY`` (``tokens.callback_id``). The task keeps only the id's SHA-256 digest, to
find the task when the provider calls; the worker derives the id again to build each request.
Rotating ``SECRET_KEY`` therefore changes the URL of tasks whose call has not been made yet
(their digest no longer matches): rotate it when no such task is pending.

A call to the URL is a signal with another credential: it goes through the one rule of
``waits.resolve`` (resolve a waiting or polling task, record it early while the call runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings

from asyncqueue_django import tokens, urlpolicy
from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import CallbackNotFound
from asyncqueue_django.jsonvalue import redact_headers, storable_headers
from asyncqueue_django.models import Task
from asyncqueue_django.services.callbacks import result_body
from asyncqueue_django.services.waits import SignalResult, resolve
from asyncqueue_django.states import SignalStatus

#: Set on every request a worker sends (a task cannot set it): marks a call of this service's own.
SERVICE_HEADER = "x-asyncqueue-task-id"

#: Where the callback endpoint lives under ``PUBLIC_BASE_URL``.
CALLBACK_PATH = "/v1/callbacks/"


def _key() -> bytes:
    return f"asyncqueue_django.callback-url:{settings.SECRET_KEY}".encode()


def callback_id_of(task_id: Any) -> str:
    """The task's one-time callback id (64 lowercase hex characters)."""
    return tokens.callback_id(_key(), str(task_id))


def callback_url_of(callback_id: str) -> str:
    """``<PUBLIC_BASE_URL>/v1/callbacks/<callback_id>``."""
    return f"{app_settings.PUBLIC_BASE_URL}{CALLBACK_PATH}{callback_id}"


def callback_url_for(task: Task) -> str:
    """The callback URL of ``task`` (what its requests carry in place of the placeholder)."""
    return callback_url_of(callback_id_of(task.pk))


def _task_for_callback(callback_id: str) -> Task:
    if not tokens.is_signal_token(callback_id):  # the same shape: 64 lowercase hex
        raise CallbackNotFound()
    task = Task.objects.filter(callback_digest=tokens.digest(callback_id)).first()
    if task is None:
        raise CallbackNotFound()
    return task


def receive_callback(
    callback_id: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime | None = None,
) -> SignalResult:
    """A provider called the task's callback URL: the task → ``completed`` with
    ``result = {"statusCode": 200, "headers": <the request's, secrets redacted>, "body":
    <parsed JSON, else text>, "duration": 0}`` (``applied=True``), or, while the task's own
    call is still running, that outcome recorded and applied when the call succeeds
    (``applied=False``).

    Raises :class:`CallbackNotFound` for an unknown id, and :class:`InvalidTransition` (naming
    the status) when the task is neither waiting nor polling — a replay of the callback that
    completed it excepted — or has timed out; :class:`AlreadySignalled` when a different
    outcome was already recorded early.
    """
    limit = app_settings.MAX_STORED_RESPONSE_BYTES
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    kept = dict(headers)
    if any(k.lower() == SERVICE_HEADER for k in kept):
        # A request this service made (a task whose target is a callback URL) carries that
        # task's headers, Token Vault secrets revealed: nothing stored may hold them.
        kept = urlpolicy.cross_origin_headers(kept)
    result = {
        "statusCode": 200,
        "headers": redact_headers(storable_headers(kept, limit)),
        "body": result_body(body, content_type, len(body) > limit, limit),
        "duration": 0,
    }
    return resolve(
        lambda: _task_for_callback(callback_id),
        SignalStatus.COMPLETED,
        result,
        None,
        "call back",
        now,
    )
