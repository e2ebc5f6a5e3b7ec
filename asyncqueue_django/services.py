"""THE ONLY WRITE PATH for tasks: create, claim, cancel, retry (and, later, signal and expire).

Every status change is a guarded conditional UPDATE (``_transition``): the ``WHERE`` clause
names the statuses the lifecycle allows the change from (``states.sources_for``), so of two
concurrent actors exactly one updates the row and the other sees 0 rows, a normal outcome
reported as :class:`~asyncqueue_django.exceptions.InvalidTransition` or ``None``.

Side effects (enqueueing Celery work, Django signals) run after the transaction commits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from asyncqueue_django import states, tokens
from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import IdempotencyConflict, InvalidTransition, TaskNotFound
from asyncqueue_django.models import ApiKey, Task, Team
from asyncqueue_django.states import TaskStatus

logger = logging.getLogger(__name__)

API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)


# --------------------------------------------------------------------------------------------
# Teams and API keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    raw_key: str  # shown once, never stored


def get_or_create_team(name: str) -> tuple[Team, bool]:
    """The team called ``name``, created (with a fresh webhook secret) if it does not exist."""
    return Team.objects.get_or_create(name=name)


def create_api_key(team: Team, name: str = "") -> IssuedApiKey:
    """Issue a new key for ``team``. The raw key is returned once; only its digest is kept."""
    raw, prefix = tokens.new_api_key(app_settings.API_KEY_PREFIX)
    key = ApiKey.objects.create(team=team, name=name, prefix=prefix, digest=tokens.digest(raw))
    return IssuedApiKey(api_key=key, raw_key=raw)


def revoke_api_key(key: ApiKey, now: datetime | None = None) -> bool:
    """Revoke ``key``; False if it was already revoked. Refused from the next request on."""
    now = now or timezone.now()
    return bool(ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now))


def authenticate_api_key(raw_key: str, now: datetime | None = None) -> ApiKey | None:
    """The active key matching ``raw_key`` (with its team), or None.

    ``last_used_at`` is refreshed at most once a minute, so authentication stays one read on
    the hot path.
    """
    key = (
        ApiKey.objects.active()
        .select_related("team")
        .filter(digest=tokens.digest(raw_key))
        .first()
    )
    if key is None:
        return None
    now = now or timezone.now()
    if key.last_used_at is None or now - key.last_used_at > API_KEY_TOUCH_INTERVAL:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


# --------------------------------------------------------------------------------------------
# Creating tasks
# --------------------------------------------------------------------------------------------


@dataclass
class TaskSpec:
    """A validated request to create a task (snake_case; ``None`` means "use the default")."""

    target_url: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    payload: Any = None
    body: str | None = None
    timeout: int | None = None
    delay_until: datetime | None = None
    priority: int = 5
    queue: str = "default"
    max_retries: int | None = None
    retry_backoff: str = "exponential"
    wait_for_signal: bool = False
    max_wait_time: int | None = None
    on_complete_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A digest of the request, to tell a replay from a different request with the same key."""
        data = asdict(self)
        if data["delay_until"] is not None:
            data["delay_until"] = data["delay_until"].isoformat()
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CreatedTask:
    task: Task
    signal_token: str | None  # only on the response that created the task
    created: bool  # False when an Idempotency-Key replay returned the original task


def create_task(
    team: Team,
    spec: TaskSpec,
    *,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> CreatedTask:
    """Create a task → ``pending`` (due now) or ``delayed`` (``delay_until`` in the future).

    The row is committed before any message is sent: the Celery job is enqueued on commit.
    With ``idempotency_key``, a live earlier task of the team with the same key is returned
    instead (``created=False``) if the request is the same, else :class:`IdempotencyConflict`.
    """
    now = now or timezone.now()
    fingerprint = spec.fingerprint() if idempotency_key else ""
    if idempotency_key:
        existing = _idempotent_original(team, idempotency_key, now)
        if existing is not None:
            return _replay(existing, fingerprint)

    token = tokens.new_signal_token() if spec.wait_for_signal else None
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
        wait_for_signal=spec.wait_for_signal,
        max_wait_time=spec.max_wait_time or app_settings.DEFAULT_MAX_WAIT_TIME,
        signal_token_digest=tokens.digest(token) if token else None,
        on_complete_url=spec.on_complete_url,
        metadata=spec.metadata,
        idempotency_key=idempotency_key,
        idempotency_fingerprint=fingerprint,
        idempotency_expires_at=(
            now + timedelta(seconds=app_settings.IDEMPOTENCY_TTL) if idempotency_key else None
        ),
    )
    try:
        # A savepoint: a concurrent create with the same Idempotency-Key loses on the unique
        # constraint without breaking a transaction the caller may hold open.
        with transaction.atomic():
            task.save(force_insert=True)
    except IntegrityError:
        if not idempotency_key:
            raise
        existing = _idempotent_original(team, idempotency_key, now)
        if existing is None:
            raise
        return _replay(existing, fingerprint)
    if sent_now:
        _enqueue_on_commit(task, countdown=countdown if delayed else 0)
    return CreatedTask(task=task, signal_token=token, created=True)


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


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


def _enqueue_on_commit(task: Task, countdown: float = 0) -> None:
    task_id, queue, priority = str(task.pk), task.queue, task.priority
    transaction.on_commit(lambda: enqueue(task_id, queue, priority, countdown), robust=True)


def enqueue(task_id: str, queue: str, priority: int, countdown: float = 0) -> bool:
    """Send the execution message. False (logged) if the broker refused it: the task row is
    already committed, and the recovery sweep re-sends it after ``DISPATCH_GRACE``."""
    from asyncqueue_django.tasks import send_execute

    try:
        send_execute(task_id, queue=queue, priority=priority, countdown=countdown)
    except Exception:
        logger.warning(
            "Could not enqueue task %s; the recovery sweep will dispatch it", task_id, exc_info=True
        )
        return False
    return True


# --------------------------------------------------------------------------------------------
# Transitions
# --------------------------------------------------------------------------------------------


def _transition(
    task_id: Any,
    target: TaskStatus,
    *,
    among: frozenset[TaskStatus] | None = None,
    now: datetime,
    filters: dict[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Move one task to ``target`` if it is in an allowed source status; True if it moved."""
    sources = states.sources_for(target, among)
    updated = Task.objects.filter(pk=task_id, status__in=sources, **(filters or {})).update(
        status=target, updated_at=now, **fields
    )
    return updated == 1


def _current_status(task_id: Any, team: Team | None = None) -> str:
    qs = Task.objects.filter(pk=task_id)
    if team is not None:
        qs = qs.for_team(team)
    status = qs.values_list("status", flat=True).first()
    if status is None:
        raise TaskNotFound()
    return status


def _on_terminal(task_id: Any, status: TaskStatus) -> None:
    """The one place every terminal transition passes through, inside its transaction."""
    logger.info("Task %s finished: %s", task_id, status)


def get_task(team: Team, task_id: Any) -> Task:
    task = Task.objects.for_team(team).filter(pk=task_id).first()
    if task is None:
        raise TaskNotFound()
    return task


def cancel_task(team: Team, task_id: Any, now: datetime | None = None) -> Task:
    """``pending``/``delayed``/``waiting`` → ``cancelled``.

    Raises :class:`TaskNotFound` (not this team's) or :class:`InvalidTransition` (naming the
    current status). A cancelled waiting task's signal token answers 409 from then on.
    """
    now = now or timezone.now()
    with transaction.atomic():  # the transition and its terminal event commit together
        moved = _transition(
            task_id,
            TaskStatus.CANCELLED,
            among=states.CANCELLABLE,
            now=now,
            filters={"team": team},
            completed_at=now,
            lease_expires_at=None,
        )
        if not moved:
            raise InvalidTransition("cancel", _current_status(task_id, team))
        _on_terminal(task_id, TaskStatus.CANCELLED)
    return get_task(team, task_id)


def retry_task(team: Team, task_id: Any, now: datetime | None = None) -> Task:
    """``failed``/``timeout`` → ``pending``: a new attempt cycle (retry count back to 0).

    The task keeps its id, attempt history and signal token. Raises :class:`TaskNotFound` or
    :class:`InvalidTransition`.
    """
    now = now or timezone.now()
    with transaction.atomic():
        moved = _transition(
            task_id,
            TaskStatus.PENDING,
            among=states.RETRYABLE,
            now=now,
            filters={"team": team},
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
        if not moved:
            raise InvalidTransition("retry", _current_status(task_id, team))
        task = get_task(team, task_id)
        _enqueue_on_commit(task)
    return task


def claim_task(task_id: Any, worker: str, now: datetime | None = None) -> Task | None:
    """``pending``/``delayed`` (and due) → ``processing`` with a lease; None if not claimable.

    None is the normal answer to a duplicate or late message: the task was claimed by someone
    else, has finished, was cancelled, or is not due yet.
    """
    now = now or timezone.now()
    task = Task.objects.filter(pk=task_id).first()
    if task is None or task.status not in states.RUNNABLE:
        return None
    lease = now + timedelta(
        seconds=task.timeout * (app_settings.MAX_REDIRECTS + 1) + app_settings.LEASE_MARGIN
    )
    moved = _transition(
        task_id,
        TaskStatus.PROCESSING,
        among=states.RUNNABLE,
        now=now,
        # Tolerate a second of clock skew between the machine that set the time and this one.
        filters={"next_attempt_at__lte": now + timedelta(seconds=1)},
        leased_by=worker,
        lease_expires_at=lease,
        attempt_count=F("attempt_count") + 1,
        started_at=Coalesce(F("started_at"), Value(now), output_field=DateTimeField()),
    )
    if not moved:
        return None
    task.refresh_from_db()
    return task
