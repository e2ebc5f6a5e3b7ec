"""THE ONLY WRITE PATH for tasks and their webhook events: create, claim, cancel, retry, signal,
expire; deliver, recover and re-send webhook events; rotate webhook secrets.

Every status change is a guarded conditional UPDATE (``_transition``): the ``WHERE`` clause
names the statuses the lifecycle allows the change from (``states.sources_for``), so of two
concurrent actors exactly one updates the row and the other sees 0 rows, a normal outcome
reported as :class:`~asyncqueue_django.exceptions.InvalidTransition` or ``None``.

Every terminal transition passes through :func:`_on_terminal` (or its bulk form) inside the
transaction that makes it: that is where the one webhook event of the transition is created, so
no path can end a task without its event, and none can create two.

Side effects (enqueueing Celery work, Django signals) run after the transaction commits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from asyncqueue_django import states, tokens
from asyncqueue_django.backoff import retry_delay, schedule_delay
from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import (
    AlreadySignalled,
    IdempotencyConflict,
    InvalidTransition,
    SignalTokenNotFound,
    TaskNotFound,
    WebhookInFlight,
    WebhookNotFound,
)
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import (
    ApiKey,
    Attempt,
    AttemptOutcome,
    DeliveryStatus,
    Task,
    Team,
    WebhookAttempt,
    WebhookDelivery,
)
from asyncqueue_django.sanitize import check_json_value, redact_headers
from asyncqueue_django.signals import task_finished
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


def rotate_webhook_secret(team: Team, now: datetime | None = None) -> str:
    """Give ``team`` a new webhook secret and return it.

    The previous secret keeps signing next to the new one for ``WEBHOOK_SECRET_OVERLAP``
    seconds, so receivers can switch without losing a request. Rotating again inside that
    window retires the oldest secret at once (only two ever sign). ``team`` is refreshed.
    """
    now = now or timezone.now()
    overlap = app_settings.WEBHOOK_SECRET_OVERLAP
    with transaction.atomic():
        # Row lock: two concurrent rotations must not both keep the same "previous" secret.
        current = Team.objects.select_for_update().get(pk=team.pk)
        new_secret = tokens.new_webhook_secret()
        Team.objects.filter(pk=team.pk).update(
            webhook_secret=new_secret,
            previous_webhook_secret=current.webhook_secret if overlap else "",
            previous_secret_expires_at=now + timedelta(seconds=overlap) if overlap else None,
        )
    team.refresh_from_db(
        fields=["webhook_secret", "previous_webhook_secret", "previous_secret_expires_at"]
    )
    logger.info("Rotated the webhook secret of team %s", team.pk)
    return new_secret


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
        ApiKey.objects.active().select_related("team").filter(digest=tokens.digest(raw_key)).first()
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
        return fingerprint_of(data)


def fingerprint_of(data: Any) -> str:
    """SHA-256 of ``data`` as canonical JSON (sorted keys, no spaces)."""
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
    fingerprint: str | None = None,
    now: datetime | None = None,
) -> CreatedTask:
    """Create a task → ``pending`` (due now) or ``delayed`` (``delay_until`` in the future).

    The row is committed before any message is sent: the Celery job is enqueued on commit.
    With ``idempotency_key``, a live earlier task of the team with the same key is returned
    instead (``created=False``) if the request is the same, else :class:`IdempotencyConflict`.
    "The same" is judged by ``fingerprint`` (the API passes a digest of the request as sent, so
    a relative ``delay`` replays cleanly), or by the ``TaskSpec`` itself.
    """
    now = now or timezone.now()
    if not idempotency_key:
        fingerprint = ""
    elif fingerprint is None:
        fingerprint = spec.fingerprint()
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
        if idempotency_key:
            # A savepoint: a concurrent create with the same Idempotency-Key loses on the
            # unique constraint without breaking a transaction the caller may hold open.
            with transaction.atomic():
                task.save(force_insert=True)
        else:
            # One INSERT is atomic by itself; in autocommit it commits at once, so the
            # on-commit enqueue below fires right after it (no BEGIN/COMMIT round trips).
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


def _on_terminal(
    task_id: Any, status: TaskStatus, on_complete_url: str | None, now: datetime
) -> None:
    """The one place every terminal transition passes through, inside its transaction.

    Creates the transition's one webhook event (when the task has an ``on_complete_url``) in
    the same transaction, so the event exists if and only if the transition committed; after
    the commit, the event is enqueued for delivery and ``task_finished`` is sent.
    """
    _on_terminal_many([(task_id, on_complete_url)], status, now)


def _on_terminal_many(
    tasks: Iterable[tuple[Any, str | None]], status: TaskStatus, now: datetime
) -> None:
    """:func:`_on_terminal` for many tasks moved to ``status`` by one statement (one INSERT)."""
    event = states.EVENT_NAMES[status]
    task_ids: list[str] = []
    deliveries: list[WebhookDelivery] = []
    for task_id, url in tasks:
        task_ids.append(str(task_id))
        logger.info("Task %s finished: %s", task_id, status)
        if url:
            deliveries.append(
                WebhookDelivery(
                    task_id=task_id,
                    event=event,
                    url=url,
                    status=DeliveryStatus.PENDING,
                    next_attempt_at=now,
                    # Optimistic, as for tasks: a message lost at commit is re-sent by the sweep.
                    dispatched_at=now,
                )
            )
    if deliveries:
        WebhookDelivery.objects.bulk_create(deliveries)
        delivery_ids = [str(d.pk) for d in deliveries]
        transaction.on_commit(functools.partial(_enqueue_webhooks, delivery_ids), robust=True)
    transaction.on_commit(functools.partial(_send_finished, task_ids, str(status)), robust=True)


def _send_finished(task_ids: list[str], status: str) -> None:
    """Send ``task_finished`` for each task; a failing receiver does not stop the others."""
    for task_id in task_ids:
        for receiver, result in task_finished.send_robust(
            sender=Task, task_id=uuid.UUID(task_id), status=status
        ):
            if isinstance(result, Exception):
                logger.error(
                    "task_finished receiver %r failed for task %s",
                    receiver,
                    task_id,
                    exc_info=result,
                )


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
        task = get_task(team, task_id)
        _on_terminal(task.pk, TaskStatus.CANCELLED, task.on_complete_url, now)
    return task


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
    # With the team: the callback is signed with the team's secrets. No ORDER BY for one row.
    task = Task.objects.select_related("team").filter(pk=task_id).order_by().first()
    if task is None or task.status not in states.RUNNABLE:
        return None
    # http.call bounds a whole attempt (all redirect hops) by timeout + connect timeout.
    lease = now + timedelta(
        seconds=task.timeout + app_settings.CONNECT_TIMEOUT + app_settings.LEASE_MARGIN
    )
    attempt = task.attempt_count + 1
    moved = _transition(
        task_id,
        TaskStatus.PROCESSING,
        among=states.RUNNABLE,
        now=now,
        # The attempt count read above is part of the guard: if it moved, the row we hold is
        # stale and someone else's claim won. Tolerate a second of clock skew on the due time.
        filters={
            "next_attempt_at__lte": now + timedelta(seconds=1),
            "attempt_count": task.attempt_count,
        },
        leased_by=worker,
        claimed_at=now,
        lease_expires_at=lease,
        attempt_count=attempt,
        started_at=task.started_at or now,
    )
    if not moved:
        return None
    # The guarded UPDATE matched the row as read, so the claimed row is the one in memory with
    # these fields changed: no second read.
    task.status = TaskStatus.PROCESSING
    task.leased_by, task.claimed_at, task.lease_expires_at = worker, now, lease
    task.attempt_count, task.started_at, task.updated_at = attempt, task.started_at or now, now
    return task


# --------------------------------------------------------------------------------------------
# Execution outcomes
# --------------------------------------------------------------------------------------------


def _clean_text(raw: bytes, limit: int) -> str:
    """Response bytes as storable text: decoded leniently, NULs replaced, truncated."""
    return raw[:limit].decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _result_body(call: CallResult, limit: int) -> Any:
    """The response body for ``result.body``: parsed JSON when it is complete JSON, else text."""
    text = _clean_text(call.body, limit)
    content_type = call.headers.get("Content-Type", call.headers.get("content-type", ""))
    if "json" in content_type.lower() and not call.truncated and len(call.body) <= limit:
        try:
            value = json.loads(call.body.decode("utf-8"), parse_constant=_reject_constant)
            check_json_value(value)
            return value
        except (ValueError, RecursionError):
            pass
    return text


def _reject_constant(value: str) -> Any:
    raise ValueError(value)


def _retry_fields(task: Task, retry_after: float | None, now: datetime) -> dict[str, Any]:
    """Fields of a ``→ delayed`` transition for the next retry of ``task``."""
    retry_number = task.retry_count + 1
    capped_after = None if retry_after is None else min(retry_after, app_settings.RETRY_AFTER_MAX)
    delay = retry_delay(
        task.retry_backoff,
        retry_number,
        base=app_settings.RETRY_BASE_DELAY,
        max_delay=app_settings.RETRY_MAX_DELAY,
        jitter=app_settings.RETRY_JITTER,
        retry_after=capped_after,
    )
    short = delay <= app_settings.COUNTDOWN_MAX
    return {
        "retry_count": retry_number,
        "next_attempt_at": now + timedelta(seconds=delay),
        # Short waits ride a Celery countdown; longer ones are sent by the due sweep, so no
        # message sits in the broker with a long ETA (Redis redelivers those).
        "dispatched_at": now if short else None,
        "lease_expires_at": None,
        "_countdown": delay if short else None,
    }


def _fail_or_retry(
    task: Task, reason: str, retryable: bool, retry_after: float | None, now: datetime
) -> tuple[TaskStatus, dict[str, Any]]:
    if retryable and task.retry_count < task.max_retries:
        return TaskStatus.DELAYED, _retry_fields(task, retry_after, now)
    attempts = task.retry_count + 1
    error = (
        f"{reason} after {attempts} attempt{'s' if attempts != 1 else ''}"
        if retryable
        else f"{reason} (not retried)"
    )
    return TaskStatus.FAILED, {"error": error, "completed_at": now, "lease_expires_at": None}


def _success_fields(
    task: Task, call: CallResult, now: datetime
) -> tuple[TaskStatus, dict[str, Any]]:
    if task.early_signal_status:
        # A signal arrived while the callback ran: go straight to its outcome.
        status = TaskStatus(task.early_signal_status)
        return status, {
            "result": task.early_signal_result,
            "error": task.early_signal_error,
            "completed_at": now,
            "lease_expires_at": None,
        }
    limit = app_settings.MAX_STORED_RESPONSE_BYTES
    result = {
        "statusCode": call.status_code,
        "headers": redact_headers(call.headers),
        "body": _result_body(call, limit),
        "duration": call.duration_ms,
    }
    if task.wait_for_signal:
        return TaskStatus.WAITING, {
            "result": result,
            "wait_deadline": now + timedelta(seconds=task.max_wait_time),
            "lease_expires_at": None,
        }
    return TaskStatus.COMPLETED, {"result": result, "completed_at": now, "lease_expires_at": None}


def _delivered(call: CallResult) -> bool:
    """Whether the callback counts as delivered: a success, or, with
    ``COMPLETE_ON_CLIENT_ERROR``, a 4xx that is not retried (the target answered and refused;
    the hosted service counts that as ``completed``)."""
    if call.succeeded:
        return True
    code = call.status_code
    return (
        app_settings.COMPLETE_ON_CLIENT_ERROR
        and code is not None
        and 400 <= code < 500
        and not call.error
        and not call.retryable
    )


def finish_attempt(
    task: Task, call: CallResult, *, worker: str, now: datetime | None = None
) -> TaskStatus | None:
    """Record the attempt a worker made after :func:`claim_task` and move the task on:

    - 2xx → ``completed`` (or ``waiting`` when it waits for a signal, or straight to an early
      signal's outcome); with ``COMPLETE_ON_CLIENT_ERROR`` a 4xx that is not retried too;
    - retryable failure with retries left → ``delayed`` until the backoff has passed;
    - otherwise → ``failed`` with a readable error ("HTTP 503 after 4 attempts").

    Returns the new status, or None when the worker no longer holds the claim (its lease
    expired and the recovery sweep took the task over): then nothing is written.
    """
    now = now or timezone.now()
    number = task.attempt_count
    with transaction.atomic():
        # Lock the row so an early signal cannot slip in between reading and moving it.
        current = (
            Task.objects.select_for_update()
            .filter(
                pk=task.pk, status=TaskStatus.PROCESSING, leased_by=worker, attempt_count=number
            )
            .first()
        )
        if current is None:
            logger.info("Task %s: attempt %s result discarded, claim lost", task.pk, number)
            return None
        if _delivered(call):
            outcome, (target, fields) = (
                AttemptOutcome.SUCCEEDED,
                _success_fields(current, call, now),
            )
        else:
            target, fields = _fail_or_retry(
                current, call.describe(), call.retryable, call.retry_after, now
            )
            outcome = (
                AttemptOutcome.RETRYING if target == TaskStatus.DELAYED else AttemptOutcome.FAILED
            )
        countdown = fields.pop("_countdown", None)
        moved = _transition(
            task.pk,
            target,
            among=frozenset({TaskStatus.PROCESSING}),
            now=now,
            filters={"attempt_count": number},
            **fields,
        )
        if not moved:  # cannot happen under the row lock; kept as the guard of record
            return None
        limit = app_settings.MAX_STORED_RESPONSE_BYTES
        Attempt.objects.create(
            task_id=task.pk,
            number=number,
            started_at=now - timedelta(milliseconds=call.duration_ms),
            duration_ms=call.duration_ms,
            status_code=call.status_code,
            response_headers=redact_headers(call.headers),
            response_body=_clean_text(call.body, limit),
            error=call.error,
            outcome=outcome,
            worker=worker,
        )
        if states.is_terminal(target):
            _on_terminal(task.pk, target, current.on_complete_url, now)
        if countdown is not None:
            _enqueue_on_commit(current, countdown=countdown)
    return target


# --------------------------------------------------------------------------------------------
# Sweeps (run by beat): due delayed tasks, lost messages, dead workers
# --------------------------------------------------------------------------------------------


def _dispatch_batch(qs: Any, now: datetime, batch_size: int) -> int:
    with transaction.atomic():  # the row locks (SKIP LOCKED) hold until the commit
        rows = list(qs.lock_batch(batch_size).values_list("pk", "queue", "priority"))
        if not rows:
            return 0
        Task.objects.filter(pk__in=[r[0] for r in rows], status__in=list(states.RUNNABLE)).update(
            dispatched_at=now
        )
        for pk, queue, priority in rows:
            transaction.on_commit(functools.partial(enqueue, str(pk), queue, priority), robust=True)
    return len(rows)


def _batches(step: Any, max_batches: int = 20) -> int:
    """Run ``step(batch_size)`` until a batch comes back short (bounded per sweep)."""
    size = app_settings.SWEEP_BATCH_SIZE
    total = 0
    for _ in range(max_batches):
        done = int(step(size))
        total += done
        if done < size:
            break
    return total


def dispatch_due(now: datetime | None = None) -> int:
    """Send the messages of delayed tasks that have come due and were never sent (long delays
    and long backoffs). Returns how many were sent."""
    now = now or timezone.now()
    qs = Task.objects.due(now).filter(dispatched_at__isnull=True)
    return _batches(lambda size: _dispatch_batch(qs, now, size))


def redispatch_lost(now: datetime | None = None) -> int:
    """Re-send tasks that have been due and unclaimed for ``DISPATCH_GRACE`` since their last
    message (the broker was down at commit, or the message was lost)."""
    now = now or timezone.now()
    grace = timedelta(seconds=app_settings.DISPATCH_GRACE)
    qs = Task.objects.lost_dispatches(now, grace)
    return _batches(lambda size: _dispatch_batch(qs, now, size))


def _recover_batch(now: datetime, batch_size: int) -> int:
    recovered = 0
    with transaction.atomic():  # row locks (SKIP LOCKED) so parallel sweeps split the work
        for task in Task.objects.stale_leases(now).lock_batch(batch_size):
            target, fields = _fail_or_retry(task, "worker lost", True, None, now)
            countdown = fields.pop("_countdown", None)
            moved = _transition(
                task.pk,
                target,
                among=frozenset({TaskStatus.PROCESSING}),
                now=now,
                filters={"attempt_count": task.attempt_count, "lease_expires_at__lt": now},
                **fields,
            )
            if not moved:
                continue
            recovered += 1
            Attempt.objects.create(
                task_id=task.pk,
                number=task.attempt_count,
                started_at=task.claimed_at or now,
                duration_ms=None,
                error="worker lost (lease expired)",
                outcome=AttemptOutcome.WORKER_LOST,
                worker=task.leased_by,
            )
            if states.is_terminal(target):
                _on_terminal(task.pk, target, task.on_complete_url, now)
            if countdown is not None:
                _enqueue_on_commit(task, countdown=countdown)
    return recovered


def recover_stale_leases(now: datetime | None = None) -> int:
    """``processing`` tasks whose lease expired (their worker died) → retried or failed by the
    normal rules, the lost attempt recorded as "worker lost". Returns how many."""
    now = now or timezone.now()
    return _batches(lambda size: _recover_batch(now, size))


# --------------------------------------------------------------------------------------------
# Signals, heartbeats and wait expiry
# --------------------------------------------------------------------------------------------


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


def _timeout_error(task: Task) -> str:
    return f"No signal within maxWaitTime ({task.max_wait_time}s)"


def _expire_one(task: Task, now: datetime) -> bool:
    """``waiting`` (past its deadline) → ``timeout``, with its terminal event."""
    moved = _transition(
        task.pk,
        TaskStatus.TIMEOUT,
        among=frozenset({TaskStatus.WAITING}),
        now=now,
        filters={"wait_deadline__lte": now},
        error=_timeout_error(task),
        completed_at=now,
    )
    if moved:
        _on_terminal(task.pk, TaskStatus.TIMEOUT, task.on_complete_url, now)
    return moved


def signal_task(
    token: str,
    status: str,
    result: Any = None,
    error: str | None = None,
    now: datetime | None = None,
) -> SignalResult:
    """Resolve the task behind a one-time signal token.

    - ``waiting`` → ``completed``/``failed`` with ``result``/``error`` (``applied=True``);
    - ``pending``/``delayed``/``processing``: the signal is recorded and applied the moment the
      callback succeeds (``applied=False``);
    - past ``waitDeadline`` but not yet swept: the task times out now → :class:`InvalidTransition`
      naming ``timeout``;
    - terminal: :class:`InvalidTransition` naming the status, except that replaying exactly the
      signal that won returns the task (safe client retries).

    Raises :class:`SignalTokenNotFound` for an unknown token, :class:`AlreadySignalled` when a
    different early signal is already recorded.
    """
    now = now or timezone.now()
    target = TaskStatus(status)
    error = error or ""
    for _ in range(3):  # a lost race re-reads the task and decides again
        task = _task_for_token(token)
        if (
            task.status == TaskStatus.WAITING
            and task.wait_deadline is not None
            and task.wait_deadline <= now
        ):
            # Exact timeouts: the sweep has not run yet, but the deadline has passed.
            with transaction.atomic():
                _expire_one(task, now)
            raise InvalidTransition("signal", TaskStatus.TIMEOUT)
        with transaction.atomic():  # the transition and its terminal event commit together
            if task.status == TaskStatus.WAITING:
                if _resolve_waiting(task, target, result, error, now):
                    task.refresh_from_db()
                    return SignalResult(task, applied=True)
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
                recorded = Task.objects.filter(
                    pk=task.pk, status__in=list(states.EARLY_SIGNAL), early_signal_status=""
                ).update(
                    early_signal_status=target,
                    early_signal_result=result,
                    early_signal_error=error,
                    signal_received_at=now,
                    updated_at=now,
                )
                if recorded:
                    task.refresh_from_db()
                    return SignalResult(task, applied=False)
                continue
        # Terminal: only an exact replay of the signal that decided the task is answered 200.
        if task.signal_received_at is not None and _same_signal(
            task.status, task.result, task.error, target, result, error
        ):
            return SignalResult(task, applied=True)
        raise InvalidTransition("signal", task.status)
    raise InvalidTransition("signal", _current_status(task.pk))


def _same_signal(
    status_a: str, result_a: Any, error_a: str, status_b: str, result_b: Any, error_b: str
) -> bool:
    return status_a == status_b and result_a == result_b and (error_a or "") == (error_b or "")


def _resolve_waiting(
    task: Task, target: TaskStatus, result: Any, error: str, now: datetime
) -> bool:
    """``waiting`` (deadline not yet passed) → ``target`` with ``result``/``error``, and its
    terminal event. Call inside a transaction; False when the task was no longer waiting
    before its deadline (someone else won)."""
    moved = _transition(
        task.pk,
        target,
        among=frozenset({TaskStatus.WAITING}),
        now=now,
        filters={"wait_deadline__gt": now},
        result=result,
        error=error,
        completed_at=now,
        signal_received_at=now,
    )
    if moved:
        _on_terminal(task.pk, target, task.on_complete_url, now)
    return moved


def resolve_waiting_task(
    team: Team,
    task_id: Any,
    status: str,
    result: Any = None,
    error: str | None = None,
    now: datetime | None = None,
) -> Task:
    """An operator's signal (the admin's "complete"/"fail" actions): a ``waiting`` task of
    ``team`` → ``completed``/``failed`` with ``result``/``error``, through the same guarded
    transition and terminal event as :func:`signal_task`, without the token.

    A task past its ``waitDeadline`` but not yet swept times out now → :class:`InvalidTransition`
    naming ``timeout``. Raises :class:`TaskNotFound` (not this team's), or
    :class:`InvalidTransition` naming the current status when the task is not waiting.
    """
    now = now or timezone.now()
    target = TaskStatus(status)
    if target not in (TaskStatus.COMPLETED, TaskStatus.FAILED):
        raise ValueError(f"a waiting task is resolved as completed or failed, not {status!r}")
    operation = "complete" if target == TaskStatus.COMPLETED else "fail"
    for _ in range(3):  # a lost race re-reads the task and decides again
        task = get_task(team, task_id)
        if task.status != TaskStatus.WAITING or task.wait_deadline is None:
            break
        if task.wait_deadline <= now:
            with transaction.atomic():  # commit the timeout before refusing
                _expire_one(task, now)
            raise InvalidTransition(operation, TaskStatus.TIMEOUT)
        with transaction.atomic():  # the transition and its terminal event commit together
            if _resolve_waiting(task, target, result, error or "", now):
                task.refresh_from_db()
                return task
    raise InvalidTransition(operation, _current_status(task_id, team))


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
        updated = Task.objects.filter(
            pk=task.pk, status=TaskStatus.WAITING, wait_deadline__gt=now
        ).update(wait_deadline=deadline, updated_at=now)
        if updated:
            task.refresh_from_db()
            return task
    raise InvalidTransition("extend", _current_status(task.pk))


def expire_overdue(now: datetime | None = None) -> int:
    """Beat: ``waiting`` tasks past ``waitDeadline`` → ``timeout``, each with one terminal event.

    Works in bounded batches; each batch locks its rows with ``SKIP LOCKED`` (PostgreSQL), so
    parallel sweeps split the work and a signal racing the sweep waits for the row, then finds
    it timed out. The query walks ``aq_task_wait_deadline_idx``: cost follows the number of
    overdue tasks, not the size of the table. Returns how many timed out.
    """
    now = now or timezone.now()
    return _batches(lambda size: _expire_batch(now, size))


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
            qs = Task.objects.filter(pk__in=pks, status=TaskStatus.WAITING, wait_deadline__lte=now)
            count = qs.update(
                status=TaskStatus.TIMEOUT,
                error=f"No signal within maxWaitTime ({max_wait}s)",
                completed_at=now,
                updated_at=now,
            )
            if count == len(pks):
                expired.extend(pks)
            else:  # SQLite has no row locks: find out which rows this UPDATE moved
                expired.extend(
                    Task.objects.filter(
                        pk__in=pks, status=TaskStatus.TIMEOUT, completed_at=now
                    ).values_list("pk", flat=True)
                )
        _on_terminal_many([(pk, urls[pk]) for pk in expired], TaskStatus.TIMEOUT, now)
    return len(rows)


# --------------------------------------------------------------------------------------------
# Retention: pruning finished tasks (appended section; its imports are kept here with it)
# --------------------------------------------------------------------------------------------

from collections.abc import Callable  # noqa: E402

from asyncqueue_django.querysets import TaskQuerySet  # noqa: E402


def prunable_tasks(cutoff: datetime, now: datetime | None = None) -> TaskQuerySet:
    """Tasks :func:`prune_finished` deletes: terminal (never pending, delayed, processing or
    waiting), finished before ``cutoff``, and past their Idempotency-Key window (deleting a
    task inside it would let a client's replay create a second task). Walks
    ``aq_task_completed_idx``."""
    now = now or timezone.now()
    return (
        Task.objects.finished_before(cutoff)
        .filter(status__in=list(states.TERMINAL))
        # exclude() keeps NULLs: a task without a key has no window to wait for.
        .exclude(idempotency_expires_at__gt=now)
    )


def prune_finished(
    cutoff: datetime,
    batch_size: int,
    *,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete :func:`prunable_tasks` with their attempts (and whatever else cascades from a
    task), ``batch_size`` tasks per transaction. Returns how many tasks were deleted;
    ``progress`` is called with the running total after each batch.

    Each batch locks its rows (``SKIP LOCKED`` on PostgreSQL), so a concurrent ``retry`` of a
    failed task waits for the batch and then finds it gone (404), or the batch skips it; the
    DELETE re-checks status and cutoff, so a task that left its terminal status is never
    deleted. Short transactions keep locks brief, and an interrupted prune keeps its progress.
    """
    now = now or timezone.now()
    candidates = prunable_tasks(cutoff, now)
    total = 0
    while True:
        with transaction.atomic():  # one batch per transaction: brief locks, resumable
            pks = list(candidates.lock_batch(batch_size).values_list("pk", flat=True))
            if not pks:
                break
            # only("pk"): the collector loads tasks to cascade; payloads need not come along.
            _, per_model = (
                Task.objects.filter(
                    pk__in=pks, status__in=list(states.TERMINAL), completed_at__lt=cutoff
                )
                .only("pk")
                .delete()
            )
        total += per_model.get(Task._meta.label, 0)
        if progress is not None:
            progress(total)
        if len(pks) < batch_size:
            break
    logger.info("Pruned %s finished tasks completed before %s", total, cutoff.isoformat())
    return total


# --------------------------------------------------------------------------------------------
# Webhook events (onCompleteUrl): delivery, retries, recovery, re-send
# --------------------------------------------------------------------------------------------


def _enqueue_webhooks(delivery_ids: list[str], countdown: float = 0) -> None:
    for delivery_id in delivery_ids:
        enqueue_webhook(delivery_id, countdown)


def enqueue_webhook(delivery_id: str, countdown: float = 0) -> bool:
    """Send the delivery message of one event. False (logged) if the broker refused it: the
    event row is committed, and the recovery sweep re-sends it after ``DISPATCH_GRACE``."""
    from asyncqueue_django.tasks import send_webhook

    try:
        send_webhook(delivery_id, countdown=countdown)
    except Exception:
        logger.warning(
            "Could not enqueue webhook %s; the recovery sweep will dispatch it",
            delivery_id,
            exc_info=True,
        )
        return False
    return True


def _webhook_lease(now: datetime) -> datetime:
    # One attempt lasts at most the read timeout plus the connect timeout (http.call's
    # deadline covers every redirect hop); the margin absorbs a slow database.
    seconds = (
        app_settings.WEBHOOK_TIMEOUT + app_settings.CONNECT_TIMEOUT + app_settings.LEASE_MARGIN
    )
    return now + timedelta(seconds=seconds)


def claim_webhook(
    delivery_id: Any, worker: str, now: datetime | None = None
) -> WebhookDelivery | None:
    """A due, pending, not-in-flight event → leased to ``worker`` for one attempt.

    Returns the delivery with its task and team (one query), or None: the normal answer to a
    duplicate or late message (delivered, given up, in flight elsewhere, or not due yet).
    """
    now = now or timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id,
        status=DeliveryStatus.PENDING,
        lease_expires_at__isnull=True,
        # Tolerate a second of clock skew between the machine that set the time and this one.
        next_attempt_at__lte=now + timedelta(seconds=1),
    ).update(
        leased_by=worker,
        claimed_at=now,
        lease_expires_at=_webhook_lease(now),
        attempt_count=F("attempt_count") + 1,
        updated_at=now,
    )
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("task__team").get(pk=delivery_id)


def _webhook_retry(
    delivery: WebhookDelivery, now: datetime
) -> tuple[DeliveryStatus, dict[str, Any], float | None]:
    """Next step after a failed attempt: ``pending`` on the ``WEBHOOK_RETRY_SCHEDULE`` (with a
    Celery countdown when short, else left to the due sweep), or ``failed`` when it is used up.
    """
    retry_number = delivery.retry_count + 1
    delay = schedule_delay(
        app_settings.WEBHOOK_RETRY_SCHEDULE, retry_number, jitter=app_settings.RETRY_JITTER
    )
    if delay is None:
        return DeliveryStatus.FAILED, {"next_attempt_at": None}, None
    short = delay <= app_settings.COUNTDOWN_MAX
    fields = {
        "retry_count": retry_number,
        "next_attempt_at": now + timedelta(seconds=delay),
        "dispatched_at": now if short else None,
    }
    return DeliveryStatus.PENDING, fields, delay if short else None


def finish_webhook_attempt(
    delivery: WebhookDelivery,
    call: CallResult,
    *,
    worker: str,
    body: str,
    now: datetime | None = None,
) -> DeliveryStatus | None:
    """Record the attempt a worker made after :func:`claim_webhook` and move the event on:

    - 2xx → ``delivered``;
    - 410 Gone → ``gone`` (the receiver asked to stop; not retried);
    - an address the SSRF guard blocks, or a request that cannot be made → ``failed`` at once;
    - anything else (other statuses, timeouts, connection errors) → ``pending`` for the next
      retry on ``WEBHOOK_RETRY_SCHEDULE``, or ``failed`` once it is used up.

    ``body`` is the JSON sent; it is stored so every later attempt sends the same bytes. The
    task is never touched. Returns the new status, or None when the worker no longer holds the
    lease (the recovery sweep took the event over): then nothing is written.
    """
    now = now or timezone.now()
    number = delivery.attempt_count
    countdown: float | None = None
    fields: dict[str, Any]
    # Only a 2xx delivers (stricter than a callback, where an unfollowed 3xx also counts).
    delivered = call.status_code is not None and 200 <= call.status_code < 300 and not call.error
    if delivered:
        target, fields = DeliveryStatus.DELIVERED, {"delivered_at": now, "next_attempt_at": None}
    elif call.status_code == 410 and not call.error:
        target, fields = DeliveryStatus.GONE, {"next_attempt_at": None}
    elif call.error_kind in ("blocked", "invalid"):
        target, fields = DeliveryStatus.FAILED, {"next_attempt_at": None}
    else:
        target, fields, countdown = _webhook_retry(delivery, now)
    with transaction.atomic():  # the outcome and its attempt row commit together
        moved = WebhookDelivery.objects.filter(
            pk=delivery.pk,
            status=DeliveryStatus.PENDING,
            leased_by=worker,
            attempt_count=number,
            lease_expires_at__isnull=False,
        ).update(
            status=target,
            body=body,
            leased_by="",
            lease_expires_at=None,
            last_status_code=call.status_code,
            last_error="" if delivered else call.describe(),
            updated_at=now,
            **fields,
        )
        if not moved:
            logger.info("Webhook %s: attempt %s result discarded, lease lost", delivery.pk, number)
            return None
        WebhookAttempt.objects.create(
            delivery_id=delivery.pk,
            number=number,
            started_at=now - timedelta(milliseconds=call.duration_ms),
            duration_ms=call.duration_ms,
            status_code=call.status_code,
            error=call.error,
            worker=worker,
        )
        if countdown is not None:
            delivery_id = str(delivery.pk)
            transaction.on_commit(
                functools.partial(enqueue_webhook, delivery_id, countdown), robust=True
            )
    return target


def _dispatch_webhook_batch(qs: Any, now: datetime, batch_size: int) -> int:
    with transaction.atomic():  # the row locks (SKIP LOCKED) hold until the commit
        ids = [str(pk) for pk in qs.lock_batch(batch_size).values_list("pk", flat=True)]
        if not ids:
            return 0
        WebhookDelivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING).update(
            dispatched_at=now
        )
        transaction.on_commit(functools.partial(_enqueue_webhooks, ids), robust=True)
    return len(ids)


def dispatch_due_webhooks(now: datetime | None = None) -> int:
    """Send the messages of events whose long retry delay has passed (delays longer than
    ``COUNTDOWN_MAX`` wait here, not in the broker). Returns how many were sent."""
    now = now or timezone.now()
    qs = WebhookDelivery.objects.due(now).filter(dispatched_at__isnull=True)
    return _batches(lambda size: _dispatch_webhook_batch(qs, now, size))


def redispatch_lost_webhooks(now: datetime | None = None) -> int:
    """Re-send events due and unclaimed for ``DISPATCH_GRACE`` since their last message (the
    broker was down, the message was lost, or the worker restarted before running it)."""
    now = now or timezone.now()
    grace = timedelta(seconds=app_settings.DISPATCH_GRACE)
    qs = WebhookDelivery.objects.lost_dispatches(now, grace)
    return _batches(lambda size: _dispatch_webhook_batch(qs, now, size))


def _recover_webhook_batch(now: datetime, batch_size: int) -> int:
    recovered = 0
    with transaction.atomic():  # row locks (SKIP LOCKED) so parallel sweeps split the work
        for delivery in WebhookDelivery.objects.stale_leases(now).lock_batch(batch_size):
            target, fields, countdown = _webhook_retry(delivery, now)
            moved = WebhookDelivery.objects.filter(
                pk=delivery.pk,
                status=DeliveryStatus.PENDING,
                attempt_count=delivery.attempt_count,
                lease_expires_at__lt=now,
            ).update(
                status=target,
                leased_by="",
                lease_expires_at=None,
                last_status_code=None,
                last_error="worker lost (lease expired)",
                updated_at=now,
                **fields,
            )
            if not moved:
                continue
            recovered += 1
            WebhookAttempt.objects.create(
                delivery_id=delivery.pk,
                number=delivery.attempt_count,
                started_at=delivery.claimed_at or now,
                duration_ms=None,
                error="worker lost (lease expired)",
                worker=delivery.leased_by,
            )
            if countdown is not None:
                transaction.on_commit(
                    functools.partial(enqueue_webhook, str(delivery.pk), countdown), robust=True
                )
    return recovered


def recover_stale_webhooks(now: datetime | None = None) -> int:
    """Events whose delivering worker died (lease expired) → retried or failed by the normal
    schedule, the lost attempt recorded as "worker lost". Returns how many."""
    now = now or timezone.now()
    return _batches(lambda size: _recover_webhook_batch(now, size))


def resend_webhook(delivery: WebhookDelivery, now: datetime | None = None) -> WebhookDelivery:
    """Deliver an event again (an operator's re-send): any status → ``pending``, due now, in
    a new attempt cycle (the retry schedule starts over). The event id and body stay the same,
    so receivers can tell it is the same event.

    Raises :class:`WebhookInFlight` while a worker is delivering it.
    """
    now = now or timezone.now()
    with transaction.atomic():  # the message is sent only once the reset has committed
        moved = WebhookDelivery.objects.filter(
            pk=delivery.pk, lease_expires_at__isnull=True
        ).update(
            status=DeliveryStatus.PENDING,
            retry_count=0,
            next_attempt_at=now,
            dispatched_at=now,
            delivered_at=None,
            updated_at=now,
        )
        if not moved:
            if not WebhookDelivery.objects.filter(pk=delivery.pk).exists():
                raise WebhookNotFound()
            raise WebhookInFlight()
        delivery_id = str(delivery.pk)
        transaction.on_commit(functools.partial(enqueue_webhook, delivery_id), robust=True)
    delivery.refresh_from_db()
    return delivery


def resend_latest_webhook(team: Team, task_id: Any, now: datetime | None = None) -> WebhookDelivery:
    """:func:`resend_webhook` for the newest event of a task of ``team``.

    Raises :class:`TaskNotFound`, :class:`WebhookNotFound` (the task has no event yet) or
    :class:`WebhookInFlight`.
    """
    task = get_task(team, task_id)
    delivery = task.webhook_deliveries.order_by("-created_at", "-id").first()
    if delivery is None:
        raise WebhookNotFound("Task has no webhook event")
    return resend_webhook(delivery, now)
