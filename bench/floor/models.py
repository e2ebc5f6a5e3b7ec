"""A row with the column shapes and indexes of ``asyncqueue_django.models.Task``.

No migrations: ``migrate --run-syncdb`` creates the table for the benchmark database only.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from asyncqueue_django.models import Team, uuid7


class FloorRow(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, default="pending")
    target_url = models.TextField()
    method = models.CharField(max_length=8, default="POST")
    headers = models.JSONField(default=dict)
    payload = models.JSONField(null=True)
    body = models.TextField(null=True)  # noqa: DJ001
    timeout = models.PositiveIntegerField(default=30)
    delay_until = models.DateTimeField(null=True)
    priority = models.PositiveSmallIntegerField(default=5)
    queue = models.CharField(max_length=100, default="default")
    max_retries = models.PositiveSmallIntegerField(default=3)
    retry_backoff = models.CharField(max_length=16, default="exponential")
    retry_count = models.PositiveSmallIntegerField(default=0)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True)
    dispatched_at = models.DateTimeField(null=True)
    leased_by = models.CharField(max_length=255, blank=True)
    claimed_at = models.DateTimeField(null=True)
    lease_expires_at = models.DateTimeField(null=True)
    wait_for_signal = models.BooleanField(default=False)
    max_wait_time = models.PositiveIntegerField(default=86400)
    wait_deadline = models.DateTimeField(null=True)
    signal_token_digest = models.CharField(max_length=64, null=True, unique=True)  # noqa: DJ001
    early_signal_status = models.CharField(max_length=16, blank=True)
    early_signal_result = models.JSONField(null=True)
    early_signal_error = models.TextField(blank=True)
    signal_received_at = models.DateTimeField(null=True)
    on_complete_url = models.TextField(null=True)  # noqa: DJ001
    metadata = models.JSONField(default=dict)
    result = models.JSONField(null=True)
    error = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=255, null=True)  # noqa: DJ001
    idempotency_fingerprint = models.CharField(max_length=64, blank=True)
    idempotency_expires_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True)
    completed_at = models.DateTimeField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=["team", "-created_at"], name="aqb_floor_team_created_idx"),
            models.Index(
                fields=["team", "status", "-created_at"], name="aqb_floor_team_status_idx"
            ),
            models.Index(
                fields=["next_attempt_at"],
                name="aqb_floor_due_idx",
                condition=Q(status__in=["pending", "delayed"]),
            ),
            models.Index(
                fields=["wait_deadline"], name="aqb_floor_wait_idx", condition=Q(status="waiting")
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="aqb_floor_lease_idx",
                condition=Q(status="processing"),
            ),
            models.Index(
                fields=["completed_at"],
                name="aqb_floor_completed_idx",
                condition=Q(completed_at__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "idempotency_key"],
                name="aqb_floor_idempotency_uniq",
                condition=Q(idempotency_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return str(self.id)
