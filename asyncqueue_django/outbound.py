"""Building and signing the requests a worker sends: task callbacks and webhook events (and,
later, provider polls). The bytes then go out through ``http.call``.

Every request is signed with the team's current secrets (both during a rotation), with the
AsyncQueue header and the Standard Webhooks headers.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from django.utils import timezone

from asyncqueue_django import http, providers, services, signing, tokens, tracing
from asyncqueue_django.representation import event_body

if TYPE_CHECKING:
    from asyncqueue_django.models import Task, WebhookDelivery

__all__ = [
    "add_trace_context",
    "build_callback",
    "build_poll",
    "build_result_fetch",
    "build_webhook",
    "refresh_trace_context",
    "render_webhook",
    "target_url",
    "vault_headers",
]


def build_callback(task: Task) -> tuple[dict[str, str], bytes | None]:
    """Headers and body of the call to ``task.target_url`` (attempt ``task.attempt_count``),
    signed with the team's secrets (``webhook-id`` is ``<task id>-<attempt>``). The provider
    callback URL placeholder in the body or payload strings is filled in here.

    Header values that are Token Vault ids are replaced by their secrets here, and only here:
    the result goes to ``http.call`` and is never stored. Raises
    :class:`~asyncqueue_django.exceptions.TokenRevoked` when a token was revoked since."""
    headers = services.reveal_headers(task.team_id, task.headers)
    lower = {k.lower() for k in headers}
    body: bytes | None = None
    text, payload = task.body, task.payload
    if task.callback_digest:  # the task's provider callback URL in place of the placeholder
        url = services.callback_url_for(task)
        text, payload = (
            providers.fill_placeholder(text, url),
            providers.fill_placeholder(payload, url),
        )
    if task.method != "GET":
        if text is not None:
            body = text.encode("utf-8")
            if "content-type" not in lower:
                headers["Content-Type"] = "text/plain; charset=utf-8"
        elif payload is not None:
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
            if "content-type" not in lower:
                headers["Content-Type"] = "application/json"
    headers["X-AsyncQueue-Task-Id"] = str(task.pk)
    headers["X-AsyncQueue-Attempt"] = str(task.attempt_count)
    add_trace_context(headers, task)
    secrets = task.team.signing_secrets(timezone.now())
    headers.update(signing.sign(secrets, f"{task.pk}-{task.attempt_count}", body or b""))
    return headers, body


#: Headers of a task never forwarded to its provider's poll URL (they describe the submit body).
_NOT_FORWARDED = frozenset({"content-type", "content-encoding", "content-language"})


def build_poll(task: Task) -> tuple[str, dict[str, str], str | None]:
    """The URL and headers of one provider poll of ``task`` (poll ``task.poll_count + 1``),
    signed like every request (``webhook-id`` is ``<task id>-poll-<attempt>``), and the result
    URL to fetch once the job is done (or None; its headers: :func:`build_result_fetch`).

    With ``forwardAuth`` the task's own headers go along (Token Vault secrets revealed here,
    as for the submit call): provider APIs want the same key (and version headers) on their
    status URL. Without it none of them does. Either way, a URL whose origin came from the
    submit answer gets them only when it is the target's origin (:func:`_poll_headers`).
    Raises :class:`~asyncqueue_django.exceptions.TokenRevoked` as :func:`build_callback`
    does."""
    config = task.poll_config or {}
    resolved = config.get("resolved", {})
    url = str(resolved.get("url", ""))
    return url, _poll_headers(task, url, config.get("urlTemplate", "")), resolved.get("resultUrl")


def build_result_fetch(task: Task) -> dict[str, str]:
    """The headers of the GET of ``task``'s result URL (``resultUrlTemplate``), built as a
    poll's are: the task's own headers go to it on the terms of :func:`_poll_headers`."""
    config = task.poll_config or {}
    url = str(config.get("resolved", {}).get("resultUrl") or "")
    return _poll_headers(task, url, config.get("resultUrlTemplate", ""))


#: ``scheme://host[:port]`` written out, then the path, query or fragment.
_WRITTEN_ORIGIN_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]+[/?#]")


def _origin_written_out(template: str) -> bool:
    """Whether a URL template fixes its scheme, host and port before any ``{startResult…}``
    field, so the task's creator chose where it goes, not the submit answer."""
    head, field, _ = template.partition("{")
    return not field or _WRITTEN_ORIGIN_RE.match(head) is not None


def _same_origin(first: str, second: str) -> bool:
    try:
        return http.origin(first) == http.origin(second)
    except ValueError:  # a URL that does not parse (http.call refuses it anyway)
        return False


def _poll_headers(task: Task, url: str, template: str) -> dict[str, str]:
    """Headers of a GET of ``url`` (a poll or the result fetch) for ``task``.

    With ``forwardAuth``, the task's own headers go along to an origin its template writes out
    or to the target's origin. To an origin the submit answer chose (``{startResult.body.
    status_url}`` on another host) only the headers that follow a redirect to another origin
    go (``http.headers_for_redirect``): an answer must not be able to send the task's
    credentials — its vault secrets included — wherever it likes."""
    headers: dict[str, str] = {}
    if (task.poll_config or {}).get("forwardAuth"):
        revealed = services.reveal_headers(task.team_id, task.headers)
        headers = {k: v for k, v in revealed.items() if k.lower() not in _NOT_FORWARDED}
        if not _origin_written_out(template) and not _same_origin(target_url(task), url):
            headers = http.cross_origin_headers(headers, vault_headers(task))
    if not any(name.lower() == "accept" for name in headers):
        headers["Accept"] = "application/json"
    headers["X-AsyncQueue-Task-Id"] = str(task.pk)
    headers["X-AsyncQueue-Poll"] = str(task.poll_count + 1)
    add_trace_context(headers, task)
    secrets = task.team.signing_secrets(timezone.now())
    headers.update(signing.sign(secrets, f"{task.pk}-poll-{task.attempt_count}", b""))
    return headers


def target_url(task: Task) -> str:
    """The URL a callback goes to: ``task.target_url``, with the task's provider callback URL
    in place of the placeholder (URL-encoded in the query)."""
    if not task.callback_digest:
        return task.target_url
    return providers.fill_url_placeholder(task.target_url, services.callback_url_for(task))


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
