"""What "your app" keeps: each document under review and each order with its signal token,
the videos its converter handled, and the
onComplete webhook events it received.

Two writers touch a review or an order: the client view that created the task (it stores the
task id and the signal token) and the callback target the worker calls (it stores the status).
The callback can arrive before the client has saved anything, so both write with
``update_or_create`` on the business key and each sets only its own fields.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Conversion(models.Model):
    """A video the ``convert-video`` target "converted" (polling pattern). One row per task:
    a retried callback updates it instead of adding another."""

    task_id = models.UUIDField(unique=True)
    video_id = models.CharField(max_length=100)
    output_url = models.URLField()
    converted_at = models.DateTimeField()

    class Meta:
        ordering = ["-converted_at"]

    def __str__(self) -> str:
        return f"video {self.video_id}"


class ReviewStatus(models.TextChoices):
    REQUESTED = "requested", "Requested (callback not yet received)"
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CLOSED = "closed", "Closed (the task was no longer waiting)"


class Review(models.Model):
    """A document sent for human review (signal pattern, human in the loop)."""

    document_id = models.CharField(max_length=100, unique=True)
    task_id = models.UUIDField(null=True, blank=True)
    # The client's copy of the one-time token (the service stores only its digest). Empty when
    # the task was created outside the demo client, e.g. by curl: then whoever holds the token
    # decides, not this page.
    signal_token = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.REQUESTED
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"review of {self.document_id} ({self.status})"


class OrderStatus(models.TextChoices):
    CREATED = "created", "Created (callback not yet received)"
    AWAITING_PAYMENT = "awaiting_payment", "Awaiting payment"
    PAID = "paid", "Paid"
    EXPIRED = "expired", "Expired (not paid within maxWaitTime)"
    CANCELLED = "cancelled", "Cancelled or failed"
    LATE_PAYMENT = "late_payment", "Paid after the checkout ended (refund it)"


class Order(models.Model):
    """An order in checkout (payment pattern). Its status follows the onComplete webhook."""

    order_id = models.CharField(max_length=100, unique=True)
    amount = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    task_id = models.UUIDField(null=True, blank=True)
    signal_token = models.CharField(max_length=64, blank=True)  # as on Review
    payment_intent = models.CharField(max_length=100, blank=True)
    payment_id = models.CharField(max_length=100, blank=True)
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.CREATED
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"order {self.order_id} ({self.status})"


class ReceivedEvent(models.Model):
    """An onComplete webhook request as the receiver saw it.

    Verified events are stored once per event id (``webhook-id``): deliveries are
    at-least-once, so a repeat only bumps ``deliveries``. Refused requests are kept too (one
    row each) so the events page shows what was turned away and why.
    """

    event_id = models.CharField(max_length=256, blank=True)
    event_type = models.CharField(max_length=32, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    task_status = models.CharField(max_length=16, blank=True)
    verified = models.BooleanField()
    refusal = models.CharField(max_length=200, blank=True)
    deliveries = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event_id"],
                condition=Q(verified=True) & ~Q(event_id=""),
                name="demo_event_verified_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type or '?'} {self.event_id or '?'}"
