"""The task lifecycle (the README's Lifecycle) as pure data: statuses and allowed transitions.

No queries and no I/O here: ``services.py`` turns each transition into a guarded conditional
UPDATE whose ``WHERE status IN (...)`` clause comes from :func:`sources_for`.

::

                ┌──────── cancel ────────┐
    create ─▶ pending ◀─▶ delayed        ▼
                │                     cancelled
                ▼
            processing ──retryable failure, retries left──▶ delayed
                │ success          │ fatal failure / retries exhausted
                ▼                  ▼
       waitForSignal? ─no─▶ completed      failed
                │yes
                ▼
             waiting ──signal──▶ completed | failed
                │ ──maxWaitTime passed──▶ timeout
                └ ──cancel──▶ cancelled

A terminal task never changes again, except through an explicit ``retry`` (failed/timeout →
pending), which starts a new attempt cycle.
"""

from __future__ import annotations

from django.db.models import TextChoices


class TaskStatus(TextChoices):
    PENDING = "pending", "Pending"
    DELAYED = "delayed", "Delayed"
    PROCESSING = "processing", "Processing"
    WAITING = "waiting", "Waiting for signal"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    TIMEOUT = "timeout", "Timed out"
    CANCELLED = "cancelled", "Cancelled"


S = TaskStatus

TERMINAL: frozenset[TaskStatus] = frozenset({S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED})

#: Statuses a task can be dispatched from (it waits for a worker to claim it).
RUNNABLE: frozenset[TaskStatus] = frozenset({S.PENDING, S.DELAYED})

#: Statuses a client may cancel from (the API answers 409 otherwise).
CANCELLABLE: frozenset[TaskStatus] = frozenset({S.PENDING, S.DELAYED, S.WAITING})

#: Statuses the dead-letter ``retry`` re-runs.
RETRYABLE: frozenset[TaskStatus] = frozenset({S.FAILED, S.TIMEOUT})

#: Statuses in which an early signal is recorded and applied when the callback succeeds.
EARLY_SIGNAL: frozenset[TaskStatus] = frozenset({S.PENDING, S.DELAYED, S.PROCESSING})

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.PENDING: frozenset({S.PROCESSING, S.DELAYED, S.CANCELLED}),
    S.DELAYED: frozenset({S.PENDING, S.PROCESSING, S.CANCELLED}),
    S.PROCESSING: frozenset({S.COMPLETED, S.WAITING, S.FAILED, S.DELAYED}),
    S.WAITING: frozenset({S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.PENDING}),
    S.TIMEOUT: frozenset({S.PENDING}),
    S.CANCELLED: frozenset(),
}

#: The webhook event name of each terminal status.
EVENT_NAMES: dict[TaskStatus, str] = {
    S.COMPLETED: "task.completed",
    S.FAILED: "task.failed",
    S.TIMEOUT: "task.timeout",
    S.CANCELLED: "task.cancelled",
}


def can_transition(source: str, target: str) -> bool:
    """Whether the lifecycle allows ``source`` → ``target``."""
    try:
        return TaskStatus(target) in TRANSITIONS[TaskStatus(source)]
    except ValueError:
        return False


def sources_for(target: str, among: frozenset[TaskStatus] | None = None) -> list[str]:
    """The statuses from which ``target`` is reachable (optionally restricted to ``among``).

    Raises ``ValueError`` if none is: a service asking for an impossible transition is a bug.
    """
    sources = sorted(
        s.value
        for s, targets in TRANSITIONS.items()
        if TaskStatus(target) in targets and (among is None or s in among)
    )
    if not sources:
        raise ValueError(f"no status can move to {target!r}")
    return sources


def is_terminal(status: str) -> bool:
    return status in TERMINAL
