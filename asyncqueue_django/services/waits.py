"""Wait for signal: signals (by token, by provider callback, or an operator's), early signals,
heartbeats, exact timeouts and the expiry sweep.

A signal and a provider callback are the same thing with different credentials: each resolves
a ``waiting`` or ``polling`` task at once, and is recorded early (and applied when the call
succeeds) while the task's call has not finished yet. :func:`resolve` is that one rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from asyncqueue_django import states, tokens, validators
from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import AlreadySignalled, InvalidTransition, SignalTokenNotFound
from asyncqueue_django.models import Task, Team
from asyncqueue_django.services.engine import batches
from asyncqueue_django.services.tables import TASKS, current_status, get_task
from asyncqueue_django.services.terminal import on_terminal, on_terminal_many
from asyncqueue_django.states import TaskStatus

WAITING = frozenset({TaskStatus.WAITING})
RESOLVABLE = states.RESOLVABLE


@dataclass(frozen=True)
class SignalResult:
    task: Task
    applied: bool  # True: the task is now terminal (200); False: recorded early (202)


def _task_for_token(token: str) -> Task:
    if not tokens.is_signal_token(token):
        raise SignalTokenNotFound()
    task = Task.objects.filter(signal_token_digest=tokens.digest(token)).first()
    if task is None:
        raise SignalTokenNotFound()
    return task


def _timeout_error(max_wait_time: int) -> str:
    return f"No signal within maxWaitTime ({max_wait_time}s)"


def poll_timeout_error(max_duration: Any) -> str:
    """The error of a polling task whose provider did not finish within ``maxDuration``."""
    return f"The provider did not finish within maxDuration ({max_duration}s)"


def _expire_error(task: Task) -> str:
    if task.status == TaskStatus.POLLING:
        return poll_timeout_error((task.poll_config or {}).get("maxDuration"))
    return _timeout_error(task.max_wait_time)


def _expire_one(task: Task, now: datetime) -> bool:
    """``waiting``/``polling`` (past its deadline) → ``timeout``, with its terminal event."""
    moved = TASKS.move(
        task.pk,
        TaskStatus.TIMEOUT,
        now=now,
        among=frozenset({TaskStatus(task.status)}),
        filters={"wait_deadline__lte": now},
        error=_expire_error(task),
        completed_at=now,
        lease_expires_at=None,
    )
    if moved:
        on_terminal(task.pk, TaskStatus.TIMEOUT, task.on_complete_url, now)
    return bool(moved)


def signal_task(
    token: str,
    status: str,
    result: Any = None,
    error: str | None = None,
    now: datetime | None = None,
) -> SignalResult:
    """Resolve the task behind a one-time signal token (see :func:`resolve`).

    Raises :class:`SignalTokenNotFound` for an unknown token, and
    :class:`~asyncqueue_django.validators.InvalidInput` for a signal that breaks an input rule.
    """
    validators.check_signal(status, result, error)
    return resolve(lambda: _task_for_token(token), status, result, error, "signal", now)


def resolve(
    find: Callable[[], Task],
    status: str,
    result: Any,
    error: str | None,
    operation: str,
    now: datetime | None = None,
) -> SignalResult:
    """Resolve the task ``find`` returns (it is read again after a lost race) with a signal:

    - ``waiting``/``polling`` → ``completed``/``failed`` with ``result``/``error``
      (``applied=True``);
    - ``pending``/``delayed``/``processing``: the signal is recorded and applied the moment the
      call succeeds (``applied=False``);
    - past its deadline but not yet swept: the task times out now → :class:`InvalidTransition`
      naming ``timeout``;
    - terminal: :class:`InvalidTransition` naming the status, except that replaying exactly the
      signal that won returns the task (safe client retries).

    Raises :class:`AlreadySignalled` when a different early signal is already recorded.
    """
    now = now or timezone.now()
    target = TaskStatus(status)
    error = error or ""
    task = find()
    for _ in range(3):  # a lost race re-reads the task and decides again
        if (
            task.status in RESOLVABLE
            and task.wait_deadline is not None
            and task.wait_deadline <= now
        ):
            # Exact timeouts: the sweep has not run yet, but the deadline has passed.
            with transaction.atomic():
                _expire_one(task, now)
            raise InvalidTransition(operation, TaskStatus.TIMEOUT)
        with transaction.atomic():  # the transition and its terminal event commit together
            if task.status in RESOLVABLE:
                if _resolve_open(task, target, result, error, now):
                    task.refresh_from_db()
                    return SignalResult(task, applied=True)
                task = find()
                continue
            if task.status in states.EARLY_SIGNAL:
                if task.early_signal_status:
                    if _same_signal(
                        task.early_signal_status,
                        task.early_signal_result,
                        task.early_signal_error,
                        target,
                        result,
                        error,
                    ):
                        return SignalResult(task, applied=False)
                    raise AlreadySignalled()
                recorded = TASKS.touch(
                    task.pk,
                    "record_early_signal",
                    filters={"early_signal_status": ""},
                    early_signal_status=target,
                    early_signal_result=result,
                    early_signal_error=error,
                    signal_received_at=now,
                    updated_at=now,
                )
                if recorded:
                    task.refresh_from_db()
                    return SignalResult(task, applied=False)
                task = find()
                continue
        # Terminal: only an exact replay of the signal that decided the task is answered 200.
        if task.signal_received_at is not None and _same_signal(
            task.status, task.result, task.error, target, result, error
        ):
            return SignalResult(task, applied=True)
        raise InvalidTransition(operation, task.status)
    raise InvalidTransition(operation, current_status(task.pk))


def _same_signal(
    status_a: str, result_a: Any, error_a: str, status_b: str, result_b: Any, error_b: str
) -> bool:
    return status_a == status_b and result_a == result_b and (error_a or "") == (error_b or "")


def _resolve_open(task: Task, target: TaskStatus, result: Any, error: str, now: datetime) -> bool:
    """``waiting``/``polling`` (deadline not yet passed) → ``target`` with ``result``/``error``,
    and its terminal event. Call inside a transaction; False when the task was no longer
    waiting or polling before its deadline (someone else won). A poll in flight finds the task
    resolved when it reports, and its answer is discarded."""
    moved = TASKS.move(
        task.pk,
        target,
        now=now,
        among=RESOLVABLE,
        filters={"wait_deadline__gt": now},
        result=result,
        error=error,
        completed_at=now,
        signal_received_at=now,
        lease_expires_at=None,
    )
    if moved:
        on_terminal(task.pk, target, task.on_complete_url, now)
    return bool(moved)


def resolve_waiting_task(
    team: Team,
    task_id: Any,
    status: str,
    result: Any = None,
    error: str | None = None,
    now: datetime | None = None,
) -> Task:
    """An operator's signal (the admin's "complete"/"fail" actions): a ``waiting`` or
    ``polling`` task of ``team`` → ``completed``/``failed`` with ``result``/``error``, through
    the same guarded transition and terminal event as :func:`signal_task`, without the token.

    A task past its ``waitDeadline`` but not yet swept times out now → :class:`InvalidTransition`
    naming ``timeout``. Raises :class:`TaskNotFound` (not this team's), or
    :class:`InvalidTransition` naming the current status when the task is not waiting, and
    :class:`~asyncqueue_django.validators.InvalidInput` (a ``ValueError``) for a status other
    than completed/failed or a result/error that breaks an input rule.
    """
    now = now or timezone.now()
    validators.check_signal(status, result, error)
    target = TaskStatus(status)
    operation = "complete" if target == TaskStatus.COMPLETED else "fail"
    for _ in range(3):  # a lost race re-reads the task and decides again
        task = get_task(team, task_id)
        if task.status not in RESOLVABLE or task.wait_deadline is None:
            break
        if task.wait_deadline <= now:
            with transaction.atomic():  # commit the timeout before refusing
                _expire_one(task, now)
            raise InvalidTransition(operation, TaskStatus.TIMEOUT)
        with transaction.atomic():  # the transition and its terminal event commit together
            if _resolve_open(task, target, result, error or "", now):
                task.refresh_from_db()
                return task
    raise InvalidTransition(operation, current_status(task_id, team))


def heartbeat(token: str, extend_by: int, now: datetime | None = None) -> Task:
    """Keep a ``waiting`` task alive: ``waitDeadline`` becomes ``now + extend_by`` if that is
    later (never earlier than it was), at most ``MAX_WAIT_TIME`` from now.

    Raises :class:`SignalTokenNotFound`, or :class:`InvalidTransition` when the task is not
    waiting (a deadline already passed times the task out first, naming ``timeout``).
    """
    now = now or timezone.now()
    extend_by = min(extend_by, app_settings.MAX_WAIT_TIME)
    task = _task_for_token(token)
    if task.status == TaskStatus.WAITING and task.wait_deadline is not None:
        if task.wait_deadline <= now:
            with transaction.atomic():  # commit the timeout before answering 409
                _expire_one(task, now)
            raise InvalidTransition("extend", TaskStatus.TIMEOUT)
        deadline = max(task.wait_deadline, now + timedelta(seconds=extend_by))
        # Guarded on the deadline too: a sweep that timed the task out in between wins.
        updated = TASKS.touch(
            task.pk,
            "extend_wait",
            filters={"wait_deadline__gt": now},
            wait_deadline=deadline,
            updated_at=now,
        )
        if updated:
            task.refresh_from_db()
            return task
    raise InvalidTransition("extend", current_status(task.pk))


def expire_overdue(now: datetime | None = None) -> int:
    """Beat: ``waiting`` tasks past ``waitDeadline`` → ``timeout``, each with one terminal event.

    Works in bounded batches; each batch locks its rows with ``SKIP LOCKED`` (PostgreSQL), so
    parallel sweeps split the work and a signal racing the sweep waits for the row, then finds
    it timed out. The query walks ``aq_task_wait_deadline_idx``: cost follows the number of
    overdue tasks, not the size of the table. Returns how many timed out.
    """
    now = now or timezone.now()
    return batches(lambda size: _expire_batch(now, size))


def _expire_batch(now: datetime, batch_size: int) -> int:
    with transaction.atomic():
        rows = list(
            Task.objects.overdue(now)
            .lock_batch(batch_size)
            .values_list("pk", "max_wait_time", "on_complete_url")
        )
        if not rows:
            return 0
        urls = {pk: url for pk, _, url in rows}
        by_wait: dict[int, list[Any]] = {}
        for pk, max_wait, _ in rows:
            by_wait.setdefault(max_wait, []).append(pk)
        expired: list[Any] = []
        for max_wait, pks in by_wait.items():
            # One UPDATE per distinct maxWaitTime (the error text names it); the row locks
            # above keep every selected row waiting until this commits.
            count = TASKS.move(
                pks,
                TaskStatus.TIMEOUT,
                now=now,
                among=WAITING,
                filters={"wait_deadline__lte": now},
                error=_timeout_error(max_wait),
                completed_at=now,
            )
            if count == len(pks):
                expired.extend(pks)
            else:  # SQLite has no row locks: find out which rows this UPDATE moved
                expired.extend(
                    Task.objects.filter(
                        pk__in=pks, status=TaskStatus.TIMEOUT, completed_at=now
                    ).values_list("pk", flat=True)
                )
        on_terminal_many([(pk, urls[pk]) for pk in expired], TaskStatus.TIMEOUT, now)
    return len(rows)
