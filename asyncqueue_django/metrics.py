"""``GET /metrics``: the Prometheus text format, derived from the database at scrape time.

Nothing is counted in process memory: every number is read from the tables (through
``stats.py``) when a scrape comes, and the rendered page is kept for
``METRICS_CACHE_SECONDS`` per process. So any web process answers the same numbers, whatever
process or machine did the work (web processes, prefork children, workers elsewhere), and a
restart loses nothing. ``docs/decisions.md`` says why; ``docs/observability.md`` lists the
series, example alert rules and a Grafana dashboard.

Access: ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time), or a logged-in
staff user. Anything else is a 401 (403 for a logged-in user who is not staff).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from asyncqueue_django import stats, tokens
from asyncqueue_django.conf import app_settings
from asyncqueue_django.states import TERMINAL

__all__ = ["DatabaseCollector", "metrics_view", "render"]

_cache_lock = threading.Lock()
_cache: dict[str, Any] = {"at": None, "body": b""}


class DatabaseCollector(Collector):
    """Every series, read from the database when collected (see the module docstring)."""

    def collect(self) -> Iterator[Any]:
        started = time.monotonic()
        now = timezone.now()
        counters = stats.counters()
        depths = stats.queue_depths(now)
        backlog = stats.webhook_backlog(now)
        queues = sorted({*counters.created, *(d.queue for d in depths)})

        created = CounterMetricFamily(
            "asyncqueue_tasks_created",
            "Tasks created, by queue (pruned tasks included: the counter never goes down).",
            labels=["queue"],
        )
        for queue in queues:
            created.add_metric([queue], counters.created.get(queue, 0))
        yield created

        finished = CounterMetricFamily(
            "asyncqueue_tasks_finished",
            "Tasks that reached a terminal status, by queue and status (a retried task counts "
            "each time it finishes).",
            labels=["queue", "status"],
        )
        for queue in queues:
            for status in sorted(TERMINAL):
                finished.add_metric([queue, status], counters.finished.get((queue, status), 0))
        yield finished

        depth = GaugeMetricFamily(
            "asyncqueue_queue_tasks",
            "Tasks in a queue now, by status (pending, delayed, processing, waiting).",
            labels=["queue", "status"],
        )
        oldest = GaugeMetricFamily(
            "asyncqueue_queue_oldest_pending_age_seconds",
            "Seconds the oldest due, unclaimed (pending) task of the queue has waited; 0 when "
            "none is pending.",
            labels=["queue"],
        )
        by_queue = {d.queue: d for d in depths}
        for queue in queues:
            d = by_queue.get(queue)
            for status in stats.OPEN_STATUSES:
                depth.add_metric([queue, status.value], d.counts[status.value] if d else 0)
            oldest.add_metric([queue], d.oldest_pending_age if d else 0.0)
        yield depth
        yield oldest

        paused = GaugeMetricFamily(
            "asyncqueue_queue_paused",
            "Pauses in effect on a queue: scope all is the operator's (every team's tasks stop), "
            "scope team counts the teams that paused their own tasks on it.",
            labels=["queue", "scope"],
        )
        for (queue, scope), n in sorted(stats.paused_queues().items()):
            paused.add_metric([queue, scope], n)
        yield paused

        buckets = [
            (str(bound / 1000), counters.duration_buckets.get(bound, 0))
            for bound in stats.DURATION_BUCKETS_MS
        ]
        buckets.append(("+Inf", counters.duration_count))
        yield HistogramMetricFamily(
            "asyncqueue_attempt_duration_seconds",
            "Duration of callback attempts (request sent to response read, redirects included).",
            buckets=buckets,
            sum_value=counters.duration_sum_ms / 1000,
        )

        webhooks = CounterMetricFamily(
            "asyncqueue_webhook_deliveries",
            "Webhook delivery attempts, by outcome: delivered (2xx), gone (410), rejected "
            "(another HTTP status), error (no answer).",
            labels=["outcome"],
        )
        for outcome in stats.WEBHOOK_OUTCOMES:
            webhooks.add_metric([outcome], counters.webhook_attempts.get(outcome, 0))
        yield webhooks
        yield GaugeMetricFamily(
            "asyncqueue_webhook_backlog",
            "Webhook events not yet delivered, given up or refused (pending, in flight included).",
            value=backlog.pending,
        )
        yield GaugeMetricFamily(
            "asyncqueue_webhook_oldest_pending_age_seconds",
            "Seconds since the oldest undelivered webhook event was created; 0 when none.",
            value=backlog.oldest_age,
        )
        yield GaugeMetricFamily(
            "asyncqueue_metrics_collect_duration_seconds",
            "Seconds the database queries behind this page took.",
            value=time.monotonic() - started,
        )


def render() -> bytes:
    """The page: rendered afresh at most once per ``METRICS_CACHE_SECONDS`` in this process."""
    ttl = app_settings.METRICS_CACHE_SECONDS
    with _cache_lock:  # one scrape renders; concurrent ones wait and share its page
        at = _cache["at"]
        if ttl and at is not None and time.monotonic() - at < ttl:
            return bytes(_cache["body"])
        registry = CollectorRegistry(auto_describe=False)
        registry.register(DatabaseCollector())
        body = generate_latest(registry)
        _cache["at"], _cache["body"] = time.monotonic(), body
        return body


def clear_cache() -> None:
    with _cache_lock:
        _cache["at"] = None


def _allowed(request: HttpRequest) -> int:
    """200 when the request may read the metrics, else the status to answer."""
    expected = app_settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if expected and scheme.lower() == "bearer" and given.strip():
        return 200 if tokens.constant_time_equals(given.strip(), expected) else 401
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return 200 if user.is_active and user.is_staff else 403
    return 401


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics`` (and ``HEAD``): the Prometheus text format, for a bearer of
    ``METRICS_TOKEN`` or a staff user."""
    status = _allowed(request)
    if status != 200:
        response = HttpResponse(
            "Metrics need a bearer token (METRICS_TOKEN) or a staff login.\n",
            status=status,
            content_type="text/plain; charset=utf-8",
        )
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
