"""Creating tasks and the client's own transitions: cancel and the dead-letter retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from asyncqueue_django import states, stats, tokens, validators
from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import (
    ApiKeyRevoked,
    CallbackUrlNotConfigured,
    IdempotencyConflict,
    InvalidTokenReference,
    InvalidTransition,
)
from asyncqueue_django.models import ApiKey, Task, Team
from asyncqueue_django.services import rawsql, vault
from asyncqueue_django.services.callbacks import CALLBACKS
from asyncqueue_django.services.offsets import add_offsets
from asyncqueue_django.services.provider_callbacks import callback_id_of, callback_url_of
from asyncqueue_django.services.tables import TASKS, current_status, get_task
from asyncqueue_django.services.terminal import on_terminal
from asyncqueue_django.states import TaskStatus
from asyncqueue_django.values import TaskSpec


@dataclass(frozen=True)
class CreatedTask:
    task: Task
    signal_token: str | None  # only on the response that created the task
    created: bool  # False when an Idempotency-Key replay returned the original task
    # The provider callback URL and its id (a task using the placeholder), shown once.
    callback_url: str | None = None
    callback_id: str | None = None


@dataclass(frozen=True)
class BatchItem:
    """One task of a batch: its spec, and its own Idempotency-Key and request digest."""

    spec: TaskSpec
    idempotency_key: str | None = None
    fingerprint: str | None = None


def create_task(
    team: Team,
    spec: TaskSpec,
    *,
    idempotency_key: str | None = None,
    fingerprint: str | None = None,
    sandbox: bool = False,
    now: datetime | None = None,
    api_key: ApiKey | None = None,
) -> CreatedTask:
    """Create a task → ``pending`` (due now) or ``delayed`` (``delay_until`` in the future).

    The row is committed before any message is sent: the Celery job is enqueued on commit.
    With ``idempotency_key``, a live earlier task of the team with the same key is returned
    instead (``created=False``) if the request is the same, else :class:`IdempotencyConflict`.
    "The same" is judged by ``fingerprint`` (the API passes a digest of the request as sent, so
    a relative ``delay`` replays cleanly), or by the spec itself. A spec that breaks an input
    rule (``validators``) raises :class:`~asyncqueue_django.validators.InvalidInput`; a header
    naming a vault token that is not a live token of the team raises
    :class:`~asyncqueue_django.exceptions.InvalidTokenReference`. A ``sandbox`` task (created
    with a test key) never calls its target.

    A spec whose call carries the ``{asyncqueue_callback_url}`` placeholder gets a one-time
    provider callback URL (``callback_url``; only its id's digest is stored) and waits after a
    successful call; :class:`CallbackUrlNotConfigured` if ``PUBLIC_BASE_URL`` is not set. A
    spec with ``poll_config`` polls its provider after a successful call.

    With ``api_key`` (the key the request came with, perhaps from the short authentication
    cache), the INSERT itself requires the key to be still active — in the same statement on
    PostgreSQL — and raises :class:`ApiKeyRevoked` otherwise: a revoked key creates nothing.
    """
    return _create(team, spec, idempotency_key, fingerprint, sandbox, now, api_key, check_refs=True)


def create_tasks(
    team: Team,
    items: list[BatchItem],
    *,
    sandbox: bool = False,
    now: datetime | None = None,
    api_key: ApiKey | None = None,
) -> list[CreatedTask]:
    """Create every task of a batch, or none: each item as :func:`create_task` would, in one
    transaction; workers are woken once it commits (one wake-up per queue, not one per task).

    Every item's vault references are checked first (one query for the batch):
    :class:`InvalidTokenReference` names them as ``tasks[<index>].headers.<name>``. An item
    whose Idempotency-Key replays an earlier task returns it (``created=False``); one that
    conflicts raises :class:`IdempotencyConflict` naming its index, and nothing is created.
    With ``api_key``, a key revoked meanwhile raises :class:`ApiKeyRevoked` and creates nothing.
    """
    now = now or timezone.now()
    for item in items:
        validators.check_queue_name(item.spec.queue)
    problems = vault.invalid_references(team, [item.spec.headers for item in items])
    if problems:
        raise InvalidTokenReference(
            {
                f"tasks[{index}].headers.{header}": message
                for index, headers in sorted(problems.items())
                for header, message in headers.items()
            }
        )
    created: list[CreatedTask] = []
    unsaved: list[Task] = []
    with transaction.atomic():  # all or nothing; the wake-ups go out on commit
        if api_key is not None:
            # Row lock: a revoke of the key waits for this batch, or this batch sees it.
            active = ApiKey.objects.select_for_update().filter(pk=api_key.pk, revoked_at=None)
            if not active.exists():
                raise ApiKeyRevoked()
        for index, item in enumerate(items):
            try:
                created.append(
                    _create(
                        team,
                        item.spec,
                        item.idempotency_key,
                        item.fingerprint,
                        sandbox,
                        now,
                        None,
                        check_refs=False,
                        unsaved=unsaved,
                    )
                )
            except IdempotencyConflict as exc:
                raise IdempotencyConflict(f"tasks[{index}]: {exc.message}", index=index) from None
        # Items without an Idempotency-Key need no savepoint: one INSERT for all of them.
        Task.objects.bulk_create(unsaved)
    return created


def _create(
    team: Team,
    spec: TaskSpec,
    idempotency_key: str | None,
    fingerprint: str | None,
    sandbox: bool,
    now: datetime | None,
    api_key: ApiKey | None,
    *,
    check_refs: bool,
    unsaved: list[Task] | None = None,
) -> CreatedTask:
    now = now or timezone.now()
    validators.check_queue_name(spec.queue)
    if not idempotency_key:
        fingerprint = ""
    elif fingerprint is None:
        fingerprint = spec.fingerprint()
    if idempotency_key:
        existing = _idempotent_original(team, idempotency_key, now)
        if existing is not None:
            return _replay(existing, fingerprint)
    if check_refs:
        vault.check_references(team, spec.headers)
    validators.check_placeholder_use(spec.headers, spec.on_complete_url)
    if spec.uses_callback_url and not app_settings.PUBLIC_BASE_URL:
        raise CallbackUrlNotConfigured()

    token = tokens.new_signal_token() if spec.has_signal_token else None
    due = spec.delay_until if spec.delay_until and spec.delay_until > now else now
    delayed = due > now
    countdown = (due - now).total_seconds()
    sent_now = not delayed or countdown <= app_settings.COUNTDOWN_MAX
    task = Task(
        team=team,
        status=TaskStatus.DELAYED if delayed else TaskStatus.PENDING,
        target_url=spec.target_url,
        method=spec.method,
        headers=spec.headers,
        payload=spec.payload,
        body=spec.body,
        timeout=spec.timeout or app_settings.DEFAULT_TIMEOUT,
        delay_until=spec.delay_until,
        priority=spec.priority,
        queue=spec.queue,
        max_retries=(
            app_settings.DEFAULT_MAX_RETRIES if spec.max_retries is None else spec.max_retries
        ),
        retry_backoff=spec.retry_backoff,
        next_attempt_at=due,
        # Optimistic: if the broker is down at commit, the recovery sweep re-sends it later.
        dispatched_at=now if sent_now else None,
        wait_for_signal=spec.waits_for_signal,
        provider=spec.provider or "",
        poll_config=spec.poll_config,
        max_wait_time=spec.max_wait_time or app_settings.DEFAULT_MAX_WAIT_TIME,
        signal_token_digest=tokens.digest(token) if token else None,
        on_complete_url=spec.on_complete_url,
        metadata=spec.metadata,
        sandbox=sandbox,
        traceparent=spec.traceparent,
        tracestate=spec.tracestate,
        **_flow_fields(spec),
        idempotency_key=idempotency_key,
        idempotency_fingerprint=fingerprint,
        idempotency_expires_at=(
            now + timedelta(seconds=app_settings.IDEMPOTENCY_TTL) if idempotency_key else None
        ),
    )
    callback_id = None
    if spec.uses_callback_url:
        callback_id = callback_id_of(task.pk)
        task.callback_digest = tokens.digest(callback_id)
    try:
        if unsaved is not None and not idempotency_key:
            unsaved.append(task)  # a batch inserts these together (one bulk INSERT)
        elif idempotency_key:
            # A savepoint: a concurrent create with the same Idempotency-Key loses on the
            # unique constraint without breaking a transaction the caller may hold open.
            with transaction.atomic():
                _insert(task, api_key)
        else:
            # One INSERT is atomic by itself; in autocommit it commits at once, so the
            # on-commit wake-up below fires right after it (no BEGIN/COMMIT round trips).
            _insert(task, api_key)
    except IntegrityError:
        if not idempotency_key:
            raise
        existing = _idempotent_original(team, idempotency_key, now)
        if existing is None:
            raise
        return _replay(existing, fingerprint)
    if sent_now:
        CALLBACKS.publish_on_commit(task.pk, task, countdown=countdown if delayed else 0)
    return CreatedTask(
        task=task,
        signal_token=token,
        created=True,
        callback_url=callback_url_of(callback_id) if callback_id else None,
        callback_id=callback_id,
    )


def _flow_fields(spec: TaskSpec) -> dict[str, Any]:
    """The task columns of ``spec.flow_control`` (checked again: a caller may skip the API)."""
    flow = spec.flow_control
    if flow is None:
        return {}
    validators.check_flow_control(
        {"key": flow.key, "parallelism": flow.parallelism, "rate": flow.rate}
        | ({"period": flow.period} if flow.rate is not None else {})
    )
    return {
        "flow_key": flow.key,
        "flow_parallelism": flow.parallelism,
        "flow_rate": flow.rate,
        "flow_period": flow.period if flow.rate is not None else None,
    }


def _insert(task: Task, api_key: ApiKey | None) -> None:
    if api_key is None:
        task.save(force_insert=True)
    elif not rawsql.insert_if(task, ApiKey, pk=api_key.pk, revoked_at=None):
        raise ApiKeyRevoked()


def _idempotent_original(team: Team, key: str, now: datetime) -> Task | None:
    task = Task.objects.for_team(team).filter(idempotency_key=key).first()
    if task is None:
        return None
    if task.idempotency_expires_at and task.idempotency_expires_at <= now:
        # Past the retention window the key is free again: release it from the old task.
        Task.objects.filter(pk=task.pk, idempotency_key=key).update(idempotency_key=None)
        return None
    return task


def _replay(task: Task, fingerprint: str) -> CreatedTask:
    if not tokens.constant_time_equals(task.idempotency_fingerprint, fingerprint):
        raise IdempotencyConflict()
    return CreatedTask(task=task, signal_token=None, created=False)


def cancel_task(team: Team, task_id: Any, now: datetime | None = None) -> Task:
    """``pending``/``delayed``/``waiting`` → ``cancelled``.

    Raises :class:`TaskNotFound` (not this team's) or :class:`InvalidTransition` (naming the
    current status). A cancelled waiting task's signal token answers 409 from then on.
    """
    now = now or timezone.now()
    with transaction.atomic():  # the transition and its terminal event commit together
        task = _move_own(
            team,
            task_id,
            "cancel",
            TaskStatus.CANCELLED,
            states.CANCELLABLE,
            now,
            completed_at=now,
            lease_expires_at=None,
        )
        on_terminal(task.pk, TaskStatus.CANCELLED, task.on_complete_url, now)
    return task


def retry_task(team: Team, task_id: Any, now: datetime | None = None) -> Task:
    """``failed``/``timeout`` → ``pending``: a new attempt cycle (retry count back to 0).

    The task keeps its id, attempt history and signal token. Raises :class:`TaskNotFound` or
    :class:`InvalidTransition`.
    """
    now = now or timezone.now()
    with transaction.atomic():  # the message is sent only once the reset has committed
        # Locked, so the status read is the one the move leaves (only a retry leaves it).
        before = Task.objects.for_team(team).select_for_update().filter(pk=task_id)
        finished = before.values_list("queue", "status").first()
        task = _move_own(
            team,
            task_id,
            "retry",
            TaskStatus.PENDING,
            states.RETRYABLE,
            now,
            retry_count=0,
            next_attempt_at=now,
            dispatched_at=now,
            result=None,
            error="",
            completed_at=None,
            wait_deadline=None,
            early_signal_status="",
            early_signal_result=None,
            early_signal_error="",
            signal_received_at=None,
        )
        if finished is not None:  # the finish it leaves still counts in /metrics
            queue, status = finished
            add_offsets({(stats.FINISHED, stats.labels_key(queue=queue, status=status)): 1})
        CALLBACKS.publish_on_commit(task.pk, task)
    return task


def _move_own(
    team: Team,
    task_id: Any,
    operation: str,
    to: TaskStatus,
    among: frozenset[TaskStatus],
    now: datetime,
    **fields: Any,
) -> Task:
    """A client's transition of its own task (call inside a transaction): the moved task, or
    :class:`InvalidTransition` naming the status that refused it."""
    moved = TASKS.move(task_id, to, now=now, among=among, filters={"team": team}, **fields)
    if not moved:
        raise InvalidTransition(operation, current_status(task_id, team))
    return get_task(team, task_id)
