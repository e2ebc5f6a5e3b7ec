"""Building and signing the requests a worker sends: task callbacks and webhook events (and,
later, provider polls). The bytes then go out through ``http.call``.

Every request is signed with the team's current secrets (both during a rotation), with the
AsyncQueue header and the Standard Webhooks headers.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from django.utils import timezone

from asyncqueue_django import services, signing, tokens, tracing
from asyncqueue_django.representation import event_body

if TYPE_CHECKING:
    from asyncqueue_django.models import Task, WebhookDelivery

__all__ = [
    "add_trace_context",
    "build_callback",
    "build_webhook",
    "refresh_trace_context",
    "render_webhook",
    "vault_headers",
]


def build_callback(task: Task) -> tuple[dict[str, str], bytes | None]:
    """Headers and body of the call to ``task.target_url`` (attempt ``task.attempt_count``),
    signed with the team's secrets (``webhook-id`` is ``<task id>-<attempt>``).

    Header values that are Token Vault ids are replaced by their secrets here, and only here:
    the result goes to ``http.call`` and is never stored. Raises
    :class:`~asyncqueue_django.exceptions.TokenRevoked` when a token was revoked since."""
    headers = services.reveal_headers(task.team_id, task.headers)
    lower = {k.lower() for k in headers}
    body: bytes | None = None
    if task.method != "GET":
        if task.body is not None:
            body = task.body.encode("utf-8")
            if "content-type" not in lower:
                headers["Content-Type"] = "text/plain; charset=utf-8"
        elif task.payload is not None:
            body = json.dumps(task.payload, separators=(",", ":"), ensure_ascii=False).encode()
            if "content-type" not in lower:
                headers["Content-Type"] = "application/json"
    headers["X-AsyncQueue-Task-Id"] = str(task.pk)
    headers["X-AsyncQueue-Attempt"] = str(task.attempt_count)
    add_trace_context(headers, task)
    secrets = task.team.signing_secrets(timezone.now())
    headers.update(signing.sign(secrets, f"{task.pk}-{task.attempt_count}", body or b""))
    return headers, body


def vault_headers(task: Task) -> frozenset[str]:
    """The (lower-case) names of the task's headers that carry a Token Vault secret: dropped,
    like every credential, when a redirect leaves the target's origin."""
    return frozenset(name.lower() for name in tokens.vault_references(task.headers))


#: The body of a webhook event (rendered once, then stored and re-sent as is).
render_webhook = event_body


def build_webhook(delivery: WebhookDelivery, body: str) -> dict[str, str]:
    """Headers of one delivery attempt: JSON, the event and task ids, and both signatures
    (``webhook-id`` is the event id, the same on every attempt and re-send)."""
    headers = {
        "Content-Type": "application/json",
        "X-AsyncQueue-Event": delivery.event,
        "X-AsyncQueue-Task-Id": str(delivery.task_id),
        "X-AsyncQueue-Delivery-Attempt": str(delivery.attempt_count),
    }
    add_trace_context(headers, delivery.task)
    secrets = delivery.task.team.signing_secrets(timezone.now())
    headers.update(signing.sign(secrets, str(delivery.pk), body.encode("utf-8")))
    return headers


def add_trace_context(headers: dict[str, str], task: Task) -> None:
    """Add the task's W3C trace context (``traceparent``, ``tracestate``) to an outbound call's
    headers: as the create request sent it, or as the current OpenTelemetry span when one of
    the same trace is open. A header the task itself sets (any case) is left as it is."""
    present = {name.lower() for name in headers}
    for name, value in tracing.outbound_headers(task.traceparent, task.tracestate).items():
        if name not in present:
            headers[name] = value


def refresh_trace_context(headers: dict[str, str], task: Task) -> None:
    """Derive the trace headers of a built callback again, inside the span that makes the call
    (the request is built before that span opens, where the database may be read for vault
    secrets), so the target sees the call span as its parent. A ``traceparent`` the task itself
    sets is left as it is."""
    if any(name.lower() == "traceparent" for name in task.headers):
        return
    headers.update(tracing.outbound_headers(task.traceparent, task.tracestate))
