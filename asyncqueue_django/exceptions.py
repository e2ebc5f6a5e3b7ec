"""Domain errors raised by ``services.py``. ``api/exceptions.py`` maps each to one HTTP status.

Each carries a stable machine-readable ``code`` and a human message.
"""

from __future__ import annotations

from typing import Any


class AsyncQueueError(Exception):
    code = "error"
    message = "Request failed"

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.message
        self.extra = extra
        super().__init__(self.message)


class TaskNotFound(AsyncQueueError):
    code = "not_found"
    message = "Task not found"


#: Each status in a sentence: "Cannot signal this task: it has timed out".
STATUS_PHRASES = {
    "pending": "is pending",
    "delayed": "is delayed until its next attempt",
    "processing": "is running its callback",
    "waiting": "is waiting for a signal",
    "completed": "has completed",
    "failed": "has failed",
    "timeout": "has timed out",
    "cancelled": "was cancelled",
}


class InvalidTransition(AsyncQueueError):
    """The task is not in a status the operation accepts (someone else won, or it is done)."""

    code = "invalid_status"

    def __init__(self, operation: str, current_status: str) -> None:
        self.current_status = current_status
        phrase = STATUS_PHRASES.get(current_status, f"is {current_status}")
        super().__init__(f"Cannot {operation} this task: it {phrase}", status=current_status)


class IdempotencyConflict(AsyncQueueError):
    code = "idempotency_conflict"
    message = "Idempotency-Key was already used with a different request body"


class SignalTokenNotFound(AsyncQueueError):
    code = "not_found"
    message = "Unknown signal token"


class AlreadySignalled(AsyncQueueError):
    """An early signal was already recorded for the task, and this one differs from it."""

    code = "already_signalled"
    message = "A different signal was already recorded for this task"


class WebhookNotFound(AsyncQueueError):
    code = "not_found"
    message = "No webhook event found"


class WebhookInFlight(AsyncQueueError):
    """A worker is delivering the event right now; re-send it once that attempt is over."""

    code = "webhook_in_flight"
    message = "The webhook event is being delivered right now"
