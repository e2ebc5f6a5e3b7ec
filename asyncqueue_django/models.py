"""Data model: teams and their API keys, tasks and their callback attempts, webhook events and
their delivery attempts.

Models hold fields, constraints and indexes only; every write that changes a status goes through
``services`` (the statuses and their allowed changes are in ``states.py``).
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime

from django.db import models
from django.db.models import Q

from asyncqueue_django import tokens
from asyncqueue_django.querysets import (
    ApiKeyQuerySet,
    AttemptQuerySet,
    PollQuerySet,
    ScheduleQuerySet,
    TaskQuerySet,
    VaultTokenQuerySet,
    WebhookDeliveryQuerySet,
)
from asyncqueue_django.states import (
    AttemptOutcome,
    DeliveryStatus,
    KeyMode,
    RetryBackoff,
    SignalStatus,
    TaskStatus,
    is_terminal,
)

__all__ = [
    "ApiKey",
    "Attempt",
    "AttemptOutcome",
    "Dashboard",
    "DeadTask",
    "DeliveryStatus",
    "FlowLimiter",
    "KeyMode",
    "MetricOffset",
    "PollingTask",
    "Queue",
    "RetryBackoff",
    "Schedule",
    "SignalStatus",
    "Task",
    "TaskStatus",
    "Team",
    "VaultToken",
    "WebhookAttempt",
    "WebhookDelivery",
    "uuid7",
]


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): 48-bit Unix milliseconds, then randomness.

    Time ordering keeps inserts at the right edge of the primary-key index and lets ids sort by
    creation. Python 3.14 ships ``uuid.uuid7``; this is the same layout for 3.11+.
    """
    native = getattr(uuid, "uuid7", None)
    if native is not None:
        return native()  # type: ignore[no-any-return]
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & 0x3FFF_FFFF_FFFF_FFFF)
    return uuid.UUID(int=value)


def _new_webhook_secret() -> str:
    return tokens.new_webhook_secret()


class Team(models.Model):
    """A tenant: owns API keys and tasks, and signs its callbacks and webhooks."""

    name = models.CharField(max_length=100, unique=True)
    webhook_secret = models.CharField(max_length=100, default=_new_webhook_secret, editable=False)
    # During rotation the previous secret keeps signing (next to the new one) until this moment.
    previous_webhook_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign right now: the current one, and the previous one while its
        rotation overlap lasts."""
        secrets = [self.webhook_secret]
        expires = self.previous_secret_expires_at
        if self.previous_webhook_secret and expires is not None and expires > now:
            secrets.append(self.previous_webhook_secret)
        return secrets


class ApiKey(models.Model):
    """An API key of a team. Only the SHA-256 digest of the key is stored."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=32, editable=False, help_text="First characters, shown.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # A test key's tasks are sandbox tasks (stored and shown, never calling their target).
    mode = models.CharField(max_length=8, choices=KeyMode.choices, default=KeyMode.LIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        label = f" ({self.name})" if self.name else ""
        return f"{self.prefix}…{label}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Task(models.Model):
    """One HTTP task: the call to make, its retry policy, and where it stands."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="tasks")
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING)

    # The call.
    target_url = models.TextField()
    method = models.CharField(max_length=8, default="POST")
    headers = models.JSONField(default=dict, blank=True)
    payload = models.JSONField(null=True, blank=True)
    body = models.TextField(null=True, blank=True)  # noqa: DJ001  (null: no body; "": empty body)
    timeout = models.PositiveIntegerField(help_text="Per-attempt HTTP timeout, seconds.")

    # Scheduling and retries.
    delay_until = models.DateTimeField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(default=5)
    queue = models.CharField(max_length=100, default="default")
    max_retries = models.PositiveSmallIntegerField()
    retry_backoff = models.CharField(
        max_length=16, choices=RetryBackoff.choices, default=RetryBackoff.EXPONENTIAL
    )
    retry_count = models.PositiveSmallIntegerField(
        default=0, help_text="Retries made in the current attempt cycle."
    )
    attempt_count = models.PositiveIntegerField(
        default=0, help_text="Attempts made over the task's life (numbers the attempts)."
    )
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When a pending or delayed task is due."
    )
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was last handed to the broker."
    )

    # Claim lease of the worker running the callback.
    leased_by = models.CharField(max_length=255, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    # Wait for signal.
    wait_for_signal = models.BooleanField(default=False)
    max_wait_time = models.PositiveIntegerField(help_text="Seconds the task may stay waiting.")
    wait_deadline = models.DateTimeField(null=True, blank=True)
    signal_token_digest = models.CharField(
        max_length=64, null=True, blank=True, unique=True, editable=False
    )
    # A signal that arrived before the callback finished, applied when it succeeds.
    early_signal_status = models.CharField(max_length=16, choices=SignalStatus.choices, blank=True)
    early_signal_result = models.JSONField(null=True, blank=True)
    early_signal_error = models.TextField(blank=True)
    signal_received_at = models.DateTimeField(null=True, blank=True)

    # Provider callback URL: the SHA-256 digest of the one-time callback id (the id itself is
    # derived again from the task id when a request is built; see ``tokens.callback_id``).
    callback_digest = models.CharField(
        max_length=64, null=True, blank=True, unique=True, editable=False
    )

    # Provider polling: the poll settings (with the poll URL resolved from the submit answer
    # once the task is polling), and the record of the polls made.
    provider = models.CharField(max_length=64, blank=True)
    poll_config = models.JSONField(null=True, blank=True)
    poll_count = models.PositiveIntegerField(default=0)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_poll_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_poll_error = models.TextField(blank=True)

    # Created with a test key: never calls its target (see ``services/callbacks.py``).
    sandbox = models.BooleanField(default=False)

    # Flow control (``services/flow.py``): tasks of one team sharing ``flow_key`` start at most
    # ``flow_parallelism`` at once and at most ``flow_rate`` per ``flow_period`` seconds. NULL
    # key: no flow control (the claim's fast path).
    flow_key = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    flow_parallelism = models.PositiveIntegerField(null=True, blank=True)
    flow_rate = models.PositiveIntegerField(null=True, blank=True)
    flow_period = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds.")

    # Notification and bookkeeping.
    on_complete_url = models.TextField(null=True, blank=True)  # noqa: DJ001
    metadata = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    # NULL, not "", so the partial unique constraint ignores tasks without a key.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    idempotency_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    idempotency_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # W3C Trace Context of the create request (validated; "" when it had none), sent on every
    # call the task makes.
    traceparent = models.CharField(max_length=55, blank=True, default="", editable=False)
    tracestate = models.CharField(max_length=512, blank=True, default="", editable=False)

    created_at = models.DateTimeField(auto_now_add=True, db_index=False)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # GET /v1/tasks: a team's tasks newest first, optionally filtered by status.
            models.Index(fields=["team", "-created_at"], name="aq_task_team_created_idx"),
            models.Index(fields=["team", "status", "-created_at"], name="aq_task_team_status_idx"),
            # Due sweep and recovery: runnable tasks by due time.
            models.Index(
                fields=["next_attempt_at"],
                name="aq_task_due_idx",
                condition=Q(status__in=[TaskStatus.PENDING, TaskStatus.DELAYED]),
            ),
            # A worker's claim on one queue, in the claim's order: it reads that queue's due
            # tasks only, highest priority first, however large other queues' backlogs are
            # (a paused queue, one no worker consumes).
            models.Index(
                fields=["queue", "-priority", "next_attempt_at"],
                name="aq_task_queue_due_idx",
                condition=Q(status__in=[TaskStatus.PENDING, TaskStatus.DELAYED]),
            ),
            # Expiry sweep: waiting tasks by deadline (cost follows overdue rows, not the table).
            models.Index(
                fields=["wait_deadline"],
                name="aq_task_wait_deadline_idx",
                condition=Q(status=TaskStatus.WAITING),
            ),
            # Recovery of tasks whose worker died mid-call.
            models.Index(
                fields=["lease_expires_at"],
                name="aq_task_lease_idx",
                condition=Q(status=TaskStatus.PROCESSING),
            ),
            # Provider polls: polling tasks by next poll time, and polls in flight by lease.
            models.Index(
                fields=["next_attempt_at"],
                name="aq_task_poll_due_idx",
                condition=Q(status=TaskStatus.POLLING),
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="aq_task_poll_lease_idx",
                condition=Q(status=TaskStatus.POLLING, lease_expires_at__isnull=False),
            ),
            # Flow control: due flow-controlled tasks of a queue (a batch claim finds their
            # keys here; empty, so free, when no task uses flow control), due ones of a key,
            # and how many of a key are in flight.
            models.Index(
                fields=["queue", "next_attempt_at"],
                name="aq_task_flow_due_idx",
                condition=Q(status__in=[TaskStatus.PENDING, TaskStatus.DELAYED])
                & Q(flow_key__isnull=False),
            ),
            models.Index(
                fields=["team", "flow_key", "next_attempt_at"],
                name="aq_task_flow_key_due_idx",
                condition=Q(status__in=[TaskStatus.PENDING, TaskStatus.DELAYED])
                & Q(flow_key__isnull=False),
            ),
            models.Index(
                fields=["team", "flow_key"],
                name="aq_task_flow_busy_idx",
                condition=Q(status=TaskStatus.PROCESSING) & Q(flow_key__isnull=False),
            ),
            # Retention pruning of finished tasks.
            models.Index(
                fields=["completed_at"],
                name="aq_task_completed_idx",
                condition=Q(completed_at__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "idempotency_key"],
                name="aq_task_idempotency_uniq",
                condition=Q(idempotency_key__isnull=False),
            ),
            models.CheckConstraint(
                condition=Q(status__in=TaskStatus.values), name="aq_task_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=1, priority__lte=10), name="aq_task_priority_range"
            ),
            models.CheckConstraint(
                condition=Q(payload__isnull=True) | Q(body__isnull=True),
                name="aq_task_payload_or_body",
            ),
            models.CheckConstraint(
                condition=~Q(status=TaskStatus.WAITING) | Q(wait_deadline__isnull=False),
                name="aq_task_waiting_has_deadline",
            ),
            models.CheckConstraint(
                condition=~Q(status=TaskStatus.POLLING)
                | Q(wait_deadline__isnull=False, poll_config__isnull=False),
                name="aq_task_polling_is_bounded",
            ),
            models.CheckConstraint(
                condition=~Q(status=TaskStatus.PROCESSING) | Q(lease_expires_at__isnull=False),
                name="aq_task_processing_has_lease",
            ),
            models.CheckConstraint(
                condition=Q(retry_count__lte=models.F("max_retries")),
                name="aq_task_retry_count_bounded",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.status)


def _new_token_id() -> str:
    return tokens.new_vault_token_id()


class FlowLimiter(models.Model):
    """The limiter of one flow-control key of a team: its row is locked by every claim of the
    key's tasks, so claims of one key take turns (claims of other keys do not wait), and it
    keeps the start times of the key's last ``rate`` calls (the sliding rate window).

    How many of the key's tasks are in flight is counted from the tasks themselves (a partial
    index), never kept here: nothing to drift when a worker dies.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="flow_limiters")
    key = models.CharField(max_length=100)
    # Unix times (float seconds) of the most recent starts, oldest first, at most ``rate``.
    starts = models.JSONField(default=list, blank=True)
    # When the wake-up sent for the key's held-back tasks comes (one at a time).
    wake_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "flow-control limiter"
        constraints = [
            models.UniqueConstraint(fields=["team", "key"], name="aq_flowlimiter_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.team_id})"


class Queue(models.Model):
    """A queue's pause switch: for one team's tasks on it (``team`` set, from the API), or for
    every team's (``team`` empty, from the admin or the management command). A paused queue
    accepts tasks and starts none until resumed. Queues need no row to exist: a task's
    ``queue`` names it; a row is written the first time it is paused.
    """

    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, related_name="queues", null=True, blank=True
    )
    name = models.CharField(max_length=100)
    paused = models.BooleanField(default=False)
    paused_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "team"]
        indexes = [
            # The claim's "is this queue paused" probe (a handful of rows at most).
            models.Index(fields=["name"], name="aq_queue_paused_idx", condition=Q(paused=True)),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "name"], name="aq_queue_team_uniq", condition=Q(team__isnull=False)
            ),
            models.UniqueConstraint(
                fields=["name"], name="aq_queue_all_uniq", condition=Q(team__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({'every team' if self.team_id is None else self.team_id})"


class VaultToken(models.Model):
    """A secret of a team kept in the Token Vault, for task headers to refer to by id.

    Only the Fernet ciphertext of the value is stored (``vault.py``); it is decrypted when a
    worker builds a request, and nowhere else.
    """

    id = models.CharField(primary_key=True, max_length=40, default=_new_token_id, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="vault_tokens")
    name = models.CharField(max_length=100)
    ciphertext = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = VaultTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "vault token"
        ordering = ["-created_at", "id"]
        indexes = [
            # GET /v1/tokens: a team's live tokens, newest first.
            models.Index(fields=["team", "-created_at"], name="aq_vault_team_created_idx"),
        ]

    def __str__(self) -> str:  # never the value
        return f"{self.id} ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Schedule(models.Model):
    """A team's cron schedule: a task template created again at every tick.

    When it runs lives in django-celery-beat's rows (a ``CrontabSchedule`` of its own, with its
    time zone, and a ``PeriodicTask`` that beat fires; ``enabled`` off is "paused"), so the admin
    shows and edits it and the beat a project already runs fires it. Deleting the
    ``PeriodicTask`` deletes the schedule. ``last_tick_at`` is the tick key: the services move
    it forward with a guarded UPDATE, so each tick creates at most one task.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="schedules")
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.CASCADE,
        related_name="asyncqueue_schedule",
        editable=False,
    )
    task_template = models.JSONField(
        help_text="The validated create body (camelCase) each tick creates a task from."
    )
    sandbox = models.BooleanField(
        default=False, help_text="Created with a test key: its tasks never call their target."
    )
    active_since = models.DateTimeField(
        help_text="Ticks before this moment (creation, last resume or cron change) never run."
    )
    last_tick_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_task_id = models.UUIDField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [
            # GET /v1/schedules: a team's schedules, newest first.
            models.Index(fields=["team", "-created_at"], name="aq_schedule_team_created_idx"),
        ]

    def __str__(self) -> str:
        return f"schedule {self.id}"


class Attempt(models.Model):
    """One HTTP call to a task's target."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    worker = models.CharField(max_length=255, blank=True)

    objects = AttemptQuerySet.as_manager()

    class Meta:
        ordering = ["task", "number"]
        indexes = [
            # The admin dashboard's latency percentiles: the attempts of the last hours.
            models.Index(fields=["started_at"], name="aq_attempt_started_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["task", "number"], name="aq_attempt_number_uniq"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.task_id}"


class WebhookDelivery(models.Model):
    """One onComplete event of a task and the state of its delivery.

    Exactly one row per terminal transition of a task that has an ``on_complete_url``. Its id
    is the event id: every delivery attempt (and every re-send) carries it as ``webhook-id``.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=32)
    url = models.TextField(help_text="The task's onCompleteUrl when the event was created.")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    # The exact JSON sent, fixed at the first attempt so every retry sends the same bytes.
    body = models.TextField(blank=True)

    attempt_count = models.PositiveIntegerField(
        default=0, help_text="Attempts made over the event's life (numbers the attempts)."
    )
    retry_count = models.PositiveSmallIntegerField(
        default=0, help_text="Retries scheduled in the current attempt cycle."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was last handed to the broker."
    )
    # Claim lease of the worker making the current attempt.
    leased_by = models.CharField(max_length=255, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        ordering = ["created_at", "id"]
        indexes = [
            # Due sweep: pending deliveries by due time.
            models.Index(
                fields=["next_attempt_at"],
                name="aq_whd_due_idx",
                condition=Q(status=DeliveryStatus.PENDING),
            ),
            # Recovery of deliveries whose worker died mid-call.
            models.Index(
                fields=["lease_expires_at"],
                name="aq_whd_lease_idx",
                condition=Q(status=DeliveryStatus.PENDING, lease_expires_at__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="aq_whd_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status=DeliveryStatus.PENDING) | Q(next_attempt_at__isnull=False),
                name="aq_whd_pending_is_scheduled",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.id} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a webhook event to its URL."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="aq_whattempt_number_uniq"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of webhook {self.delivery_id}"


class PollingTask(Task):
    """Tasks as provider polls, the rows of the polls kind of outbound work
    (``services/polls.py``): a proxy with its own sweep queries (a polling task waits for its
    next poll at ``next_attempt_at``; one with a lease has a poll in flight)."""

    objects = PollQuerySet.as_manager()  # type: ignore[assignment,misc]

    class Meta:
        proxy = True
        verbose_name = "polling task"


class DeadTask(Task):
    """Failed and timed-out tasks, as their own admin page for reprocessing in bulk.

    A proxy: no table and no data of its own; the admin narrows the queryset to the statuses
    ``retry`` accepts.
    """

    class Meta:
        proxy = True
        verbose_name = "failed or timed-out task"
        verbose_name_plural = "failed and timed-out tasks"


class Dashboard(Task):
    """The admin dashboard's place in the admin (``/admin/asyncqueue/dashboard/``, listed on
    the app index). A proxy: no table and no data of its own."""

    class Meta:
        proxy = True
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"


class MetricOffset(models.Model):
    """What the tables no longer show, for counters that must never go down.

    ``/metrics`` derives its counters from the rows (tasks by queue and status, attempts by
    duration, webhook attempts by outcome). Pruning deletes rows and a retry moves a task out
    of its finished status; both add what they took away here, in the same transaction, so
    live rows + offset stays monotonic. Written only on those cold paths, never per task.
    """

    metric = models.CharField(max_length=64)
    labels = models.CharField(
        max_length=255, blank=True, help_text="k=v pairs, sorted, comma-joined"
    )
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["metric", "labels"], name="aq_metricoffset_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.metric}{{{self.labels}}} +{self.value}"
