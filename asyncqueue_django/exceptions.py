"""Domain errors raised by ``services``.

Each carries a stable machine-readable ``code``, a human message and the HTTP status the API
answers it with (``http_status``), so a new error cannot be forgotten in a side table. (The
Python client's errors are ``asyncqueue_django.client.AsyncQueueError``: a different family.)
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    code = "error"
    message = "Request failed"
    http_status = 400

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.message
        self.extra = extra
        super().__init__(self.message)


class ApiKeyRevoked(ServiceError):
    """The request's API key was revoked before its write happened (the write checks it)."""

    code = "authentication_failed"
    http_status = 401
    message = "Invalid or revoked API key"


class TaskNotFound(ServiceError):
    code = "not_found"
    http_status = 404
    message = "Task not found"


#: Each status in a sentence: "Cannot signal this task: it has timed out".
STATUS_PHRASES = {
    "pending": "is pending",
    "delayed": "is delayed until its next attempt",
    "processing": "is running its callback",
    "waiting": "is waiting for a signal",
    "polling": "is polling its provider",
    "completed": "has completed",
    "failed": "has failed",
    "timeout": "has timed out",
    "cancelled": "was cancelled",
}


class InvalidTransition(ServiceError):
    """The task is not in a status the operation accepts (someone else won, or it is done)."""

    code = "invalid_status"
    http_status = 409

    def __init__(self, operation: str, current_status: str) -> None:
        self.current_status = current_status
        phrase = STATUS_PHRASES.get(current_status, f"is {current_status}")
        super().__init__(f"Cannot {operation} this task: it {phrase}", status=current_status)


class IdempotencyConflict(ServiceError):
    code = "idempotency_conflict"
    http_status = 409
    message = "Idempotency-Key was already used with a different request body"


class SignalTokenNotFound(ServiceError):
    code = "not_found"
    http_status = 404
    message = "Unknown signal token"


class CallbackNotFound(ServiceError):
    """No task has this provider callback id (unknown, mistyped, or its task was pruned)."""

    code = "not_found"
    http_status = 404
    message = "Invalid or expired callback ID"


class CallbackUrlNotConfigured(ServiceError):
    """A task uses the callback URL placeholder but ``ASYNCQUEUE['PUBLIC_BASE_URL']`` is not
    set: no provider could reach the URL, so the task is refused."""

    code = "callback_url_not_configured"
    http_status = 503
    message = (
        "Provider callback URLs need ASYNCQUEUE['PUBLIC_BASE_URL'] (the address providers "
        "reach this service at)"
    )


class AlreadySignalled(ServiceError):
    """An early signal was already recorded for the task, and this one differs from it."""

    code = "already_signalled"
    http_status = 409
    message = "A different signal was already recorded for this task"


class WebhookNotFound(ServiceError):
    code = "not_found"
    http_status = 404
    message = "No webhook event found"


class WebhookInFlight(ServiceError):
    """A worker is delivering the event right now; re-send it once that attempt is over."""

    code = "webhook_in_flight"
    http_status = 409
    message = "The webhook event is being delivered right now"


class TokenNotFound(ServiceError):
    code = "not_found"
    http_status = 404
    message = "Token not found"


class InvalidFields(ServiceError):
    """Input the services refuse, with ``fields`` naming each problem (``{"cron": "…"}``)."""

    code = "validation_error"
    http_status = 400

    def __init__(self, fields: dict[str, str]) -> None:
        summary = "; ".join(f"{name}: {text}" for name, text in fields.items())
        super().__init__(f"Invalid request: {summary}", fields=fields)
        self.fields = fields


class InvalidTokenReference(InvalidFields):
    """A task header names a Token Vault id that is not a live token of the team."""


class TokenRevoked(ServiceError):
    """A header's vault token was revoked (or deleted) after the task was created: the request
    cannot be built, and the attempt fails without retry."""

    code = "token_revoked"
    http_status = 409

    def __init__(self, header: str, token_id: str) -> None:
        super().__init__(f"Header {header!r} refers to vault token {token_id}, which was revoked")


class VaultNotConfigured(ServiceError):
    """No encryption key for the Token Vault (``ASYNCQUEUE['VAULT_KEYS']``) while DEBUG is off."""

    code = "vault_not_configured"
    http_status = 503
    message = "The Token Vault has no encryption key (set ASYNCQUEUE['VAULT_KEYS'])"


class TestKeyCannotChangeLive(ServiceError):
    """A test key asked to change live work: a live task (cancel, retry), a live schedule, a
    queue (which holds live tasks) or a vault token (live tasks may use it). Test keys read
    everything of their team and change only sandbox work, so trying things out can never
    stop, restart or redirect a live call."""

    code = "test_key_cannot_change_live"
    http_status = 403
    message = "A test key can change only sandbox tasks and schedules"


class ScheduleNotFound(ServiceError):
    code = "not_found"
    http_status = 404
    message = "Schedule not found"


class ScheduleLimitReached(ServiceError):
    """The team already has ``MAX_SCHEDULES_PER_TEAM`` schedules."""

    code = "schedule_limit_reached"
    http_status = 409
    message = "The team has reached its schedule limit"


class InvalidScheduleInput(InvalidFields):
    """A schedule's cron expression, time zone or task template cannot be used."""
