"""The demo's HTTP surface, in three roles.

- **Callback targets** the worker calls (``/demo/api/convert-video``, ``start-review``,
  ``start-checkout``): signed requests, verified with ``asyncqueue_django.receiver``.
- **Signallers**: the review page's Approve / Reject buttons, and the fake payment provider's
  webhook (``/demo/api/stripe-webhook``), which look up the stored signal token and POST it to
  ``/v1/signals/<token>``.
- **onComplete receiver** (``/demo/api/order-webhook``): verifies the signature, records the
  event once per event id, and moves the order on.
- **The client**: ``/demo/`` (HTML forms, CSRF-protected) and ``/demo/api/client/<action>``
  (JSON for curl, authenticated by the demo API key) create tasks through the REST API and
  store the tokens; ``/demo/tasks/<id>`` polls a task.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from asyncqueue_django.client import (
    TERMINAL_STATUSES,
    AsyncQueueError,
    ConflictError,
    NotFoundError,
)
from asyncqueue_django.receiver import SignatureError, verify, verify_webhook
from asyncqueue_django.tokens import constant_time_equals
from demo import client, flows
from demo.forms import ConvertVideoForm, DecisionForm, StartCheckoutForm, StartReviewForm
from demo.models import (
    Conversion,
    Order,
    OrderStatus,
    ReceivedEvent,
    Review,
    ReviewStatus,
)

logger = logging.getLogger(__name__)

# Callbacks to the targets are signed like webhooks; refuse anything not signed by the team.
verify_callback = verify_webhook(secrets=lambda request: client.webhook_secrets())


def _json_object(request: HttpRequest) -> dict[str, Any] | None:
    try:
        data = json.loads(request.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _callback_task_id(request: HttpRequest) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.headers.get("X-AsyncQueue-Task-Id", ""))
    except ValueError:
        return None


def _string(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and 0 < len(value) <= 100 else None


# --------------------------------------------------------------------------------------------
# Callback targets
# --------------------------------------------------------------------------------------------


@require_POST
@verify_callback
def convert_video_target(request: HttpRequest) -> HttpResponse:
    """Polling pattern: "convert" the video and answer 200 at once."""
    data, task_id = _json_object(request), _callback_task_id(request)
    video_id = _string(data, "videoId") if data else None
    if video_id is None or task_id is None:
        return _error("Expected a signed callback with a JSON payload carrying videoId", 400)
    output = f"https://cdn.example.com/videos/{video_id}.mp4"
    # Keyed by task: a repeated callback (at-least-once delivery) changes nothing.
    Conversion.objects.update_or_create(
        task_id=task_id,
        defaults={"video_id": video_id, "output_url": output, "converted_at": timezone.now()},
    )
    return JsonResponse({"videoId": video_id, "status": "converted", "outputUrl": output})


@require_POST
@verify_callback
def start_review_target(request: HttpRequest) -> HttpResponse:
    """Signal pattern: put the document in the review queue; a person decides later."""
    data, task_id = _json_object(request), _callback_task_id(request)
    document_id = _string(data, "documentId") if data else None
    if document_id is None or task_id is None:
        return _error("Expected a signed callback with a JSON payload carrying documentId", 400)
    Review.objects.update_or_create(
        document_id=document_id, defaults={"status": ReviewStatus.IN_REVIEW, "task_id": task_id}
    )
    return JsonResponse({"documentId": document_id, "status": "in_review"})


@require_POST
@verify_callback
def start_checkout_target(request: HttpRequest) -> HttpResponse:
    """Payment pattern: open the checkout and create the (fake) PaymentIntent, whose
    ``metadata.orderId`` the provider's webhook will carry back."""
    data, task_id = _json_object(request), _callback_task_id(request)
    order_id = _string(data, "orderId") if data else None
    if data is None or order_id is None or task_id is None:
        return _error("Expected a signed callback with a JSON payload carrying orderId", 400)
    payment_intent = f"pi_{task_id.hex[:24]}"  # derived from the task: retries agree on it
    fields = {
        "status": OrderStatus.AWAITING_PAYMENT,
        "task_id": task_id,
        "payment_intent": payment_intent,
    }
    amount = data.get("amount")
    create_fields: dict[str, Any] = dict(fields)
    if isinstance(amount, int | float) and not isinstance(amount, bool):
        create_fields["amount"] = Decimal(str(amount))
    Order.objects.update_or_create(
        order_id=order_id, defaults=fields, create_defaults=create_fields
    )
    return JsonResponse(
        {"orderId": order_id, "status": "awaiting_payment", "paymentIntent": payment_intent}
    )


# --------------------------------------------------------------------------------------------
# The fake payment provider's webhook (the payment pattern's last step)
# --------------------------------------------------------------------------------------------


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """``payment_intent.succeeded`` → find the order, POST ``{"status": "completed", "result":
    {"paymentId": …}}`` to ``/v1/signals/<its token>``, answer ``{"received": true}``.

    A fake: a real handler verifies the provider's signature first (Stripe:
    ``stripe.Webhook.construct_event`` with the ``Stripe-Signature`` header). Answers 502 when
    the signal could not be delivered, so the provider retries; a signal refused because the
    checkout already ended (timed out, cancelled) marks the order for a refund instead.
    """
    data = _json_object(request)
    if data is None or not isinstance(data.get("type"), str):
        return _error("Expected a JSON event with a type", 400)
    if data["type"] != "payment_intent.succeeded":
        return JsonResponse({"received": True, "ignored": data["type"]})
    obj = data.get("data", {}).get("object") if isinstance(data.get("data"), dict) else None
    payment_id = _string(obj, "id") if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or payment_id is None:
        return _error("Expected data.object.id (the PaymentIntent id)", 400)
    metadata = obj.get("metadata")
    order_id = _string(metadata, "orderId") if isinstance(metadata, dict) else None
    # By the order id the PaymentIntent carries in its metadata, else by the PaymentIntent.
    lookup = {"order_id": order_id} if order_id else {"payment_intent": payment_id}
    order = Order.objects.filter(**lookup).first()
    if order is None:
        return _error("No order for this payment", 404)
    if not order.signal_token:
        return _error(f"Order {order.order_id} has no checkout task this demo can signal", 409)

    try:
        with client.signaller(client.base_url(request)) as aq:
            aq.signals.send(order.signal_token, "completed", result={"paymentId": payment_id})
    except (NotFoundError, ConflictError) as exc:
        Order.objects.filter(pk=order.pk).exclude(status=OrderStatus.PAID).update(
            status=OrderStatus.LATE_PAYMENT, payment_id=payment_id, updated_at=timezone.now()
        )
        return JsonResponse({"received": True, "refund": True, "reason": str(exc)})
    except AsyncQueueError as exc:
        logger.warning("Signal for order %s not delivered: %s", order.order_id, exc)
        return _error("Could not signal the checkout task; retry later", 502)
    Order.objects.filter(pk=order.pk).update(payment_id=payment_id, updated_at=timezone.now())
    return JsonResponse({"received": True})


# --------------------------------------------------------------------------------------------
# The onComplete webhook receiver
# --------------------------------------------------------------------------------------------

ORDER_OUTCOMES = {
    "task.completed": OrderStatus.PAID,
    "task.timeout": OrderStatus.EXPIRED,
    "task.failed": OrderStatus.CANCELLED,
    "task.cancelled": OrderStatus.CANCELLED,
}


def _event_fields(request: HttpRequest) -> dict[str, str]:
    """What the events page shows, read leniently (also from requests that are refused)."""
    data = _json_object(request) or {}
    task = data.get("task")
    if not isinstance(task, dict):
        task = {}

    def text(value: Any, limit: int) -> str:
        return value[:limit] if isinstance(value, str) else ""

    return {
        "event_id": text(request.headers.get("webhook-id"), 256),
        "event_type": text(data.get("event"), 32),
        "task_id": text(task.get("id"), 64),
        "task_status": text(task.get("status"), 16),
    }


@csrf_exempt
@require_POST
def order_webhook(request: HttpRequest) -> HttpResponse:
    """Verify the signature (either header format), record the event once per event id, and
    move the order of its task on: completed → paid, timeout → expired, failed or cancelled →
    cancelled. A refused request is recorded as unverified and answered 400."""
    try:
        secrets = client.webhook_secrets()
    except ImproperlyConfigured as exc:
        logger.error("Cannot verify webhooks: %s", exc)
        return _error("Receiver not configured", 503)  # a 5xx: the sender retries
    fields = _event_fields(request)
    try:
        verify(request.body, request.headers, secrets)
    except SignatureError as exc:  # missing, malformed, too old or too new, or no match
        ReceivedEvent.objects.create(verified=False, refusal=str(exc)[:200], **fields)
        return _error("Invalid webhook signature", 400)
    except ValueError as exc:  # a configured secret is not a whsec_ secret
        logger.error("Cannot verify webhooks: %s", exc)
        return _error("Receiver not configured", 503)

    with transaction.atomic():  # the event row and the order update commit together
        if fields["event_id"]:
            event, created = ReceivedEvent.objects.get_or_create(
                event_id=fields["event_id"], verified=True, defaults=fields
            )
            if not created:  # a repeated delivery of an event already handled
                ReceivedEvent.objects.filter(pk=event.pk).update(deliveries=F("deliveries") + 1)
                return JsonResponse({"received": True, "duplicate": True})
        else:
            ReceivedEvent.objects.create(verified=True, **fields)
        outcome = ORDER_OUTCOMES.get(fields["event_type"])
        if outcome is not None and fields["task_id"]:
            # Only an open checkout moves: a late payment's refund mark is kept.
            Order.objects.filter(
                task_id=fields["task_id"],
                status__in=[OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT],
            ).update(status=outcome, updated_at=timezone.now())
    return JsonResponse({"received": True})


# --------------------------------------------------------------------------------------------
# The client: pages and the JSON endpoint
# --------------------------------------------------------------------------------------------

CLIENT_FORMS: dict[str, type[forms.Form]] = {
    "convert-video": ConvertVideoForm,
    "start-review": StartReviewForm,
    "start-checkout": StartCheckoutForm,
}


def _run_client_action(base: str, action: str, data: dict[str, Any]) -> dict[str, Any]:
    """Run one client action on validated form data; returns a JSON-able summary (never the
    signal token: the client keeps it)."""
    if action == "convert-video":
        task = flows.convert_video(base, data["videoId"])
        return {"task": task, "poll": f"{base}/demo/tasks/{task['id']}"}
    if action == "start-review":
        review = flows.request_review(base, data["documentId"])
        return {"taskId": str(review.task_id), "documentId": review.document_id, "stored": True}
    order = flows.start_checkout(base, data["orderId"], data["amount"], data["maxWaitTime"])
    return {"taskId": str(order.task_id), "orderId": order.order_id, "stored": True}


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "demo/index.html",
        {
            "configured": bool(client.api_key()),
            "convert_form": ConvertVideoForm(),
            "review_form": StartReviewForm(),
            "checkout_form": StartCheckoutForm(),
            "conversions": Conversion.objects.all()[:10],
            "reviews": Review.objects.all()[:10],
            "orders": Order.objects.all()[:10],
        },
    )


@require_POST
def client_form(request: HttpRequest, action: str) -> HttpResponse:
    """The HTML forms of ``/demo/`` (CSRF-protected by the middleware)."""
    form = CLIENT_FORMS[action](request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(str(e) for e in errors)}")
        return HttpResponseRedirect(reverse("demo:index"))
    try:
        summary = _run_client_action(client.base_url(request), action, form.cleaned_data)
    except AsyncQueueError as exc:
        messages.error(request, f"The task was not created: {exc}")
        return HttpResponseRedirect(reverse("demo:index"))
    if action == "convert-video":
        messages.success(request, "Task created; this page polls it until it finishes.")
        return HttpResponseRedirect(reverse("demo:task", args=[summary["task"]["id"]]))
    messages.success(request, f"Task {summary['taskId']} created; its signal token is stored.")
    target = "demo:reviews" if action == "start-review" else "demo:index"
    return HttpResponseRedirect(reverse(target))


@csrf_exempt
@require_POST
def client_api(request: HttpRequest, action: str) -> HttpResponse:
    """JSON twin of the forms, for curl: ``Authorization: Bearer <DEMO_API_KEY>``.

    CSRF-exempt because it is authenticated by a header a browser never adds on its own (no
    cookie is involved).
    """
    key = client.api_key()
    sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not key or not constant_time_equals(sent, key):
        return _error("Authorization: Bearer <the demo API key> required", 401)
    data = _json_object(request)
    if data is None:
        return _error("Expected a JSON object", 400)
    form = CLIENT_FORMS[action]({k: v for k, v in data.items() if isinstance(v, str | int | float)})
    if not form.is_valid():
        return JsonResponse(
            {"error": "Invalid input", "fields": {k: list(v) for k, v in form.errors.items()}},
            status=400,
        )
    try:
        summary = _run_client_action(client.base_url(request), action, form.cleaned_data)
    except AsyncQueueError as exc:
        return _error(f"The task was not created: {exc}", 502)
    return JsonResponse(summary, status=201)


@require_GET
def task_page(request: HttpRequest, task_id: uuid.UUID) -> HttpResponse:
    """The polling pattern in a page: one ``GET /v1/tasks/{id}`` per view, and the page
    reloads itself every 2 seconds until the status is terminal."""
    try:
        with client.connect(client.base_url(request)) as aq:
            task = aq.tasks.get(task_id)
    except AsyncQueueError as exc:
        return render(request, "demo/task.html", {"error": str(exc)}, status=502)
    return render(
        request,
        "demo/task.html",
        {
            "task": task,
            "finished": task.get("status") in TERMINAL_STATUSES,
            "task_json": json.dumps(task, indent=2, sort_keys=True),
        },
    )


@require_GET
def reviews(request: HttpRequest) -> HttpResponse:
    in_review = Review.objects.filter(status=ReviewStatus.IN_REVIEW).order_by("created_at")
    return render(
        request,
        "demo/reviews.html",
        {
            "awaiting": [r for r in in_review if r.signal_token],
            "held_elsewhere": [r for r in in_review if not r.signal_token],
            "requested": Review.objects.filter(status=ReviewStatus.REQUESTED),
            "decided": Review.objects.exclude(
                status__in=[ReviewStatus.IN_REVIEW, ReviewStatus.REQUESTED]
            ).order_by("-updated_at")[:10],
            "decision_form": DecisionForm(),
        },
    )


@require_POST
def review_decision(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve / Reject (CSRF-protected form): send the signal for that review's task."""
    review = get_object_or_404(Review, pk=pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose approve or reject.")
    else:
        approve = form.cleaned_data["decision"] == "approve"
        ok, message = flows.decide_review(client.base_url(request), review, approve)
        report: Callable[[HttpRequest, str], None] = messages.success if ok else messages.error
        report(request, message)
    return HttpResponseRedirect(reverse("demo:reviews"))


@require_GET
def events(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "demo/events.html",
        {"events": ReceivedEvent.objects.all()[:50], "orders": Order.objects.all()[:10]},
    )
