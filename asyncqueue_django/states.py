"""Every status of the package and the allowed changes, as pure data: one :class:`Lifecycle`
per kind of work (a task, a webhook delivery).

No queries and no I/O here (and no models, DRF or Celery): ``services/engine.py`` turns each
change into a guarded conditional UPDATE whose ``WHERE status IN (...)`` clause comes from the
kind's lifecycle — :meth:`Lifecycle.sources_for` for a change of status,
:meth:`Lifecycle.guard` for a write that keeps the status (a claim of a webhook event, the
dispatch bookkeeping, an early signal, a heartbeat). Nothing else decides which status a write
may happen in.

The task lifecycle::

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
             waiting ──signal / provider callback──▶ completed | failed
                │ ──maxWaitTime passed──▶ timeout
                └ ──cancel──▶ cancelled

            processing ──success, the task polls a provider──▶ polling
             polling ──poll: still running──▶ polling (next poll scheduled)
                │ ──poll: done / failed, signal, provider callback──▶ completed | failed
                │ ──maxDuration passed──▶ timeout
                └ ──cancel──▶ cancelled

A terminal task never changes again, except through an explicit ``retry`` (failed/timeout →
pending), which starts a new attempt cycle.

The webhook delivery lifecycle: ``pending`` until ``delivered``, given up (``failed``) or refused
with 410 (``gone``); a failed attempt with retries left stays ``pending`` (pending → pending, a
new due time), and an operator's re-send takes any status back to ``pending``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import TextChoices


class TaskStatus(TextChoices):
    PENDING = "pending", "Pending"
    DELAYED = "delayed", "Delayed"
    PROCESSING = "processing", "Processing"
    WAITING = "waiting", "Waiting for signal"
    POLLING = "polling", "Polling the provider"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    TIMEOUT = "timeout", "Timed out"
    CANCELLED = "cancelled", "Cancelled"


class DeliveryStatus(TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (retries exhausted)"
    GONE = "gone", "Gone (410, not retried)"


class AttemptOutcome(TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    RETRYING = "retrying", "Failed, will retry"
    FAILED = "failed", "Failed"
    WORKER_LOST = "worker_lost", "Worker lost"


class SignalStatus(TextChoices):
    """The outcomes a signal (or an operator) may give a waiting task."""

    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class KeyMode(TextChoices):
    """An API key's mode: a ``test`` key's tasks are sandbox tasks that never call a target."""

    LIVE = "live", "Live"
    TEST = "test", "Test (sandbox tasks)"


class RetryBackoff(TextChoices):
    EXPONENTIAL = "exponential", "Exponential (1, 2, 4, 8 … s)"
    LINEAR = "linear", "Linear (1, 2, 3 … s)"
    FIXED = "fixed", "Fixed"


@dataclass(frozen=True)
class Lifecycle:
    """The statuses of one kind of work and the writes each allows.

    ``transitions`` maps a status to the statuses it may move to; ``in_place`` names the writes
    that keep the status (claim, dispatch, …) and the statuses each may happen in.
    """

    name: str
    transitions: Mapping[Any, frozenset[Any]]
    in_place: Mapping[str, frozenset[Any]]
    terminal: frozenset[Any]

    def can_transition(self, source: str, target: str) -> bool:
        """Whether ``source`` → ``target`` is allowed."""
        return target in self.transitions.get(source, frozenset())

    def sources_for(self, target: str, among: frozenset[str] | None = None) -> list[str]:
        """The statuses from which ``target`` is reachable (optionally restricted to ``among``).

        Raises ``ValueError`` if none is: a service asking for an impossible change is a bug.
        """
        sources = sorted(
            str(s)
            for s, targets in self.transitions.items()
            if target in targets and (among is None or s in among)
        )
        if not sources:
            raise ValueError(f"no status can move to {target!r}")
        return sources

    def guard(self, operation: str) -> list[str]:
        """The statuses in which the in-place write ``operation`` is allowed."""
        try:
            return sorted(str(s) for s in self.in_place[operation])
        except KeyError:
            raise ValueError(f"{self.name} has no in-place write {operation!r}") from None

    def is_terminal(self, status: str) -> bool:
        return status in self.terminal


S = TaskStatus
D = DeliveryStatus

TERMINAL: frozenset[TaskStatus] = frozenset({S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED})

#: Statuses a task can be dispatched from (it waits for a worker to claim it).
RUNNABLE: frozenset[TaskStatus] = frozenset({S.PENDING, S.DELAYED})

#: Statuses a client may cancel from (the API answers 409 otherwise).
CANCELLABLE: frozenset[TaskStatus] = frozenset({S.PENDING, S.DELAYED, S.WAITING, S.POLLING})

#: Statuses a signal, a provider callback or an operator's complete/fail resolves at once:
#: a task waiting for an outside event, or polling a provider for one.
RESOLVABLE: frozenset[TaskStatus] = frozenset({S.WAITING, S.POLLING})

#: Statuses in which a provider poll is scheduled (the lease marks one in flight).
POLL_OPEN: frozenset[TaskStatus] = frozenset({S.POLLING})

#: Statuses the dead-letter ``retry`` re-runs.
RETRYABLE: frozenset[TaskStatus] = frozenset({S.FAILED, S.TIMEOUT})

#: Statuses in which an early signal is recorded and applied when the callback succeeds.
EARLY_SIGNAL: frozenset[TaskStatus] = frozenset({S.PENDING, S.DELAYED, S.PROCESSING})

#: Statuses in which a worker holds the task (under a lease).
IN_FLIGHT: frozenset[TaskStatus] = frozenset({S.PROCESSING})

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.PENDING: frozenset({S.PROCESSING, S.DELAYED, S.CANCELLED}),
    S.DELAYED: frozenset({S.PENDING, S.PROCESSING, S.CANCELLED}),
    S.PROCESSING: frozenset({S.COMPLETED, S.WAITING, S.POLLING, S.FAILED, S.DELAYED}),
    S.WAITING: frozenset({S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED}),
    # polling → polling: a poll that found the job still running schedules the next one.
    S.POLLING: frozenset({S.POLLING, S.COMPLETED, S.FAILED, S.TIMEOUT, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.PENDING}),
    S.TIMEOUT: frozenset({S.PENDING}),
    S.CANCELLED: frozenset(),
}

TASK = Lifecycle(
    name="task",
    transitions=TRANSITIONS,
    in_place={
        # Handing a waiting-to-run task (or its next provider poll) to the broker.
        "dispatch": RUNNABLE | POLL_OPEN,
        # A worker leasing a polling task for one provider poll (the status stays polling).
        "claim": POLL_OPEN,
        # Recording a signal that arrived before the callback finished.
        "record_early_signal": EARLY_SIGNAL,
        # A heartbeat moving waitDeadline later.
        "extend_wait": frozenset({S.WAITING}),
    },
    terminal=frozenset(TERMINAL),
)

DELIVERY_TERMINAL: frozenset[DeliveryStatus] = frozenset({D.DELIVERED, D.FAILED, D.GONE})

#: Statuses in which an event waits for (or is in) a delivery attempt.
DELIVERY_OPEN: frozenset[DeliveryStatus] = frozenset({D.PENDING})

DELIVERY_TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    # pending → pending: a failed attempt with retries left, or a re-send of a waiting event.
    D.PENDING: frozenset({D.PENDING, D.DELIVERED, D.FAILED, D.GONE}),
    # Only an operator's re-send leaves a final status.
    D.DELIVERED: frozenset({D.PENDING}),
    D.FAILED: frozenset({D.PENDING}),
    D.GONE: frozenset({D.PENDING}),
}

DELIVERY = Lifecycle(
    name="webhook delivery",
    transitions=DELIVERY_TRANSITIONS,
    in_place={
        # A worker leasing the event for one attempt (the status stays pending).
        "claim": DELIVERY_OPEN,
        "dispatch": DELIVERY_OPEN,
    },
    terminal=frozenset(DELIVERY_TERMINAL),
)

#: The webhook event name of each terminal status.
EVENT_NAMES: dict[TaskStatus, str] = {
    S.COMPLETED: "task.completed",
    S.FAILED: "task.failed",
    S.TIMEOUT: "task.timeout",
    S.CANCELLED: "task.cancelled",
}


def can_transition(source: str, target: str) -> bool:
    """Whether the task lifecycle allows ``source`` → ``target``."""
    return TASK.can_transition(source, target)


def sources_for(target: str, among: frozenset[TaskStatus] | None = None) -> list[str]:
    """The task statuses from which ``target`` is reachable (see :meth:`Lifecycle.sources_for`)."""
    return TASK.sources_for(target, frozenset(among) if among is not None else None)


def is_terminal(status: str) -> bool:
    return status in TERMINAL
