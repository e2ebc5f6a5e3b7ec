"""The client side of the three patterns, as "your app" runs them.

Each function is one step of a pattern: create the task through the REST API, store the
signal token, later send the signal. The HTML views and the
JSON client endpoint both call these.
"""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

from asyncqueue_django.client import AsyncQueueError, ConflictError, NotFoundError, Task
from demo import client
from demo.models import Order, Review, ReviewStatus

REVIEW_MAX_WAIT = 86400  # a reviewer has 24 hours
CHECKOUT_MAX_WAIT = 3600  # a customer has 1 hour to complete payment


def convert_video(base: str, video_id: str) -> Task:
    """Polling pattern, step 1: create the task. The caller then polls ``aq.tasks.get``."""
    with client.connect(base) as aq:
        created = aq.tasks.create(
            targetUrl=f"{base}/demo/api/convert-video", payload={"videoId": video_id}
        )
    return created["task"]


def request_review(base: str, document_id: str) -> Review:
    """Signal pattern: create a task that waits for a signal, then store the token with the
    document (``Review.signal_token``), where the review page finds it."""
    with client.connect(base) as aq:
        created = aq.tasks.create(
            targetUrl=f"{base}/demo/api/start-review",
            payload={"documentId": document_id},
            waitForSignal=True,
            maxWaitTime=REVIEW_MAX_WAIT,
        )
    stored = {"task_id": created["task"]["id"], "signal_token": created["signalToken"]}
    # The start-review callback may already have created the row: never touch its status.
    review, _ = Review.objects.update_or_create(
        document_id=document_id,
        defaults=stored,
        create_defaults={**stored, "status": ReviewStatus.REQUESTED},
    )
    return review


def decide_review(base: str, review: Review, approve: bool) -> tuple[bool, str]:
    """Send the signal for ``review`` (approve → ``completed``, reject → ``failed``).

    Returns ``(ok, message)`` for the page. When the service refuses the signal because the
    task is not waiting any more (timed out, cancelled, decided elsewhere) the review is closed.
    """
    if not review.signal_token:
        return False, (
            f"The demo does not hold the signal token of {review.document_id}: whoever created "
            "the task does."
        )
    try:
        with client.signaller(base) as aq:
            if approve:
                aq.signals.send(
                    review.signal_token,
                    "completed",
                    result={"decision": "approved", "documentId": review.document_id},
                )
            else:
                aq.signals.send(review.signal_token, "failed", error="Rejected by a reviewer")
    except AsyncQueueError as exc:
        if isinstance(exc, NotFoundError | ConflictError):
            Review.objects.filter(
                pk=review.pk, status__in=[ReviewStatus.REQUESTED, ReviewStatus.IN_REVIEW]
            ).update(status=ReviewStatus.CLOSED, updated_at=timezone.now())
        return False, f"The signal for {review.document_id} was refused: {exc}"
    now = timezone.now()
    status = ReviewStatus.APPROVED if approve else ReviewStatus.REJECTED
    Review.objects.filter(pk=review.pk).update(status=status, decided_at=now, updated_at=now)
    return True, f"{review.document_id}: {status.label.lower()}; the task is resolved."


def start_checkout(
    base: str, order_id: str, amount: Decimal, max_wait_time: int = CHECKOUT_MAX_WAIT
) -> Order:
    """Payment pattern, steps 1 and 2: the order exists, a task waits for its payment (with an
    onComplete webhook), and the signal token is stored with the order
    (``Order.signal_token``), where the payment webhook finds it."""
    with client.connect(base) as aq:
        Order.objects.update_or_create(order_id=order_id, defaults={"amount": amount})
        created = aq.tasks.create(
            targetUrl=f"{base}/demo/api/start-checkout",
            payload={"orderId": order_id, "amount": float(amount)},
            waitForSignal=True,
            maxWaitTime=max_wait_time,
            onCompleteUrl=f"{base}/demo/api/order-webhook",
        )
    Order.objects.filter(order_id=order_id).update(
        task_id=created["task"]["id"],
        signal_token=created["signalToken"],
        updated_at=timezone.now(),
    )
    return Order.objects.get(order_id=order_id)
