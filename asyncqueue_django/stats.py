"""Read-only numbers about the work, from the database: what ``/metrics`` exports and what the
admin dashboard draws. Every query here is bounded: a grouped count returns one row per queue
and status, and the dashboard's windowed queries walk an index over the window only
(``docs/observability.md`` has the plans on a million tasks).

Counters are live rows plus :class:`~asyncqueue_django.models.MetricOffset` (what pruning
deleted and retries moved out of a finished status), so they never go down.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Case, Count, IntegerField, Min, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, Trunc

from asyncqueue_django import states
from asyncqueue_django.models import (
    Attempt,
    MetricOffset,
    Queue,
    Task,
    WebhookAttempt,
    WebhookDelivery,
)
from asyncqueue_django.states import DeliveryStatus, TaskStatus

#: Upper bounds (ms) of the attempt duration histogram (the last bucket is +Inf).
DURATION_BUCKETS_MS: tuple[int, ...] = (
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
)

#: Webhook attempt outcomes: delivered (2xx), gone (410), rejected (another status), error
#: (no answer: connection refused, timeout, blocked address).
WEBHOOK_OUTCOMES = ("delivered", "gone", "rejected", "error")

#: Statuses whose tasks are still in a queue (not finished).
OPEN_STATUSES = (
    TaskStatus.PENDING,
    TaskStatus.DELAYED,
    TaskStatus.PROCESSING,
    TaskStatus.WAITING,
    TaskStatus.POLLING,
)

# Offset metric names (MetricOffset.metric).
CREATED = "tasks_created"
FINISHED = "tasks_finished"
DURATION_BUCKET = "attempt_duration_bucket"
DURATION_COUNT = "attempt_duration_count"
DURATION_SUM_MS = "attempt_duration_sum_ms"
WEBHOOK_ATTEMPTS = "webhook_attempts"


def labels_key(**labels: str) -> str:
    """The canonical label string of an offset row: ``k=v`` pairs sorted by key."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def parse_labels(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split(",") if "=" in pair)


def uuid7_floor(moment: datetime) -> uuid.UUID:
    """The smallest version-7 UUID of ``moment``'s millisecond: task ids are time-ordered, so
    ``pk >= uuid7_floor(t)`` is a primary-key range scan over the tasks created since ``t``."""
    ms = int(moment.timestamp() * 1000)
    return uuid.UUID(int=(ms & 0xFFFF_FFFF_FFFF) << 80)


# -- counters (for /metrics; each is live rows + offsets) -------------------------------------


@dataclass
class Counters:
    created: dict[str, int] = field(default_factory=dict)  # queue → tasks created
    finished: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, status)
    open: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, status) now
    duration_buckets: dict[int, int] = field(default_factory=dict)  # le (ms) → cumulative
    duration_count: int = 0
    duration_sum_ms: int = 0
    webhook_attempts: dict[str, int] = field(default_factory=dict)  # outcome → attempts


def task_counts(tasks: QuerySet[Task]) -> dict[tuple[str, str], int]:
    """Tasks by (queue, status): one grouped query."""
    rows = tasks.order_by().values_list("queue", "status").annotate(n=Count("pk"))
    return {(queue, status): n for queue, status, n in rows}


def duration_histogram(attempts: QuerySet[Attempt]) -> tuple[dict[int, int], int, int]:
    """Cumulative bucket counts (le in ms), count and sum (ms) of attempt durations: one
    aggregate query (attempts without a duration, such as lost ones, are not observations)."""
    aggregates: dict[str, Any] = {
        f"le_{bound}": Count("pk", filter=Q(duration_ms__lte=bound))
        for bound in DURATION_BUCKETS_MS
    }
    row = (
        attempts.order_by()
        .filter(duration_ms__isnull=False)
        .aggregate(n=Count("pk"), total=Sum("duration_ms"), **aggregates)
    )
    buckets = {bound: int(row[f"le_{bound}"] or 0) for bound in DURATION_BUCKETS_MS}
    return buckets, int(row["n"] or 0), int(row["total"] or 0)


def _webhook_outcome() -> Case:
    return Case(
        When(status_code__isnull=True, then=Value("error")),
        When(status_code__gte=200, status_code__lt=300, then=Value("delivered")),
        When(status_code=410, then=Value("gone")),
        default=Value("rejected"),
    )


def webhook_outcomes(attempts: QuerySet[WebhookAttempt]) -> dict[str, int]:
    """Webhook delivery attempts by outcome: one grouped query."""
    rows = (
        attempts.order_by()
        .annotate(outcome=_webhook_outcome())
        .values_list("outcome")
        .annotate(n=Count("pk"))
    )
    return dict(rows)


def offsets_of_tasks(task_ids: Iterable[Any]) -> dict[tuple[str, str], int]:
    """What deleting these tasks takes away from every counter (the prune adds it to the
    offsets in the same transaction): four bounded queries over the batch."""
    ids = list(task_ids)
    increments: dict[tuple[str, str], int] = defaultdict(int)
    if not ids:
        return increments
    for (queue, status), n in task_counts(Task.objects.filter(pk__in=ids)).items():
        increments[(CREATED, labels_key(queue=queue))] += n
        if states.is_terminal(status):
            increments[(FINISHED, labels_key(queue=queue, status=status))] += n
    buckets, count, total = duration_histogram(Attempt.objects.filter(task_id__in=ids))
    for bound, n in buckets.items():
        increments[(DURATION_BUCKET, labels_key(le=str(bound)))] += n
    increments[(DURATION_COUNT, "")] += count
    increments[(DURATION_SUM_MS, "")] += total
    outcomes = webhook_outcomes(WebhookAttempt.objects.filter(delivery__task_id__in=ids))
    for outcome, n in outcomes.items():
        increments[(WEBHOOK_ATTEMPTS, labels_key(outcome=outcome))] += n
    return {key: n for key, n in increments.items() if n}


def counters() -> Counters:
    """Every counter and the open-task gauges: four queries (tasks grouped, attempt
    histogram, webhook outcomes, offsets). The task and attempt ones read whole tables:
    ``/metrics`` caches the result (``METRICS_CACHE_SECONDS``)."""
    result = Counters()
    created: dict[str, int] = defaultdict(int)
    finished: dict[tuple[str, str], int] = defaultdict(int)
    for (queue, status), n in task_counts(Task.objects.all()).items():
        created[queue] += n
        if states.is_terminal(status):
            finished[(queue, status)] += n
        else:
            result.open[(queue, status)] = n
    buckets, count, total = duration_histogram(Attempt.objects.all())
    outcomes: dict[str, int] = defaultdict(int, webhook_outcomes(WebhookAttempt.objects.all()))
    for offset in MetricOffset.objects.all():
        labels = parse_labels(offset.labels)
        if offset.metric == CREATED:
            created[labels.get("queue", "")] += offset.value
        elif offset.metric == FINISHED:
            finished[(labels.get("queue", ""), labels.get("status", ""))] += offset.value
        elif offset.metric == DURATION_BUCKET and labels.get("le", "").isdigit():
            bound = int(labels["le"])
            if bound in buckets:
                buckets[bound] += offset.value
        elif offset.metric == DURATION_COUNT:
            count += offset.value
        elif offset.metric == DURATION_SUM_MS:
            total += offset.value
        elif offset.metric == WEBHOOK_ATTEMPTS:
            outcomes[labels.get("outcome", "")] += offset.value
    result.created = dict(created)
    result.finished = dict(finished)
    result.duration_buckets = buckets
    result.duration_count = count
    result.duration_sum_ms = total
    result.webhook_attempts = dict(outcomes)
    return result


# -- gauges (for /metrics and the dashboard) ---------------------------------------------------


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    counts: Mapping[str, int]  # status → tasks now
    oldest_pending_age: float  # seconds the oldest due, unclaimed task has waited (0: none)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def queue_depths(now: datetime, team: Any = None) -> list[QueueDepth]:
    """Open tasks per queue and status, and the oldest pending age per queue: three grouped
    queries, each over partial indexes (runnable by due time, in flight by lease, waiting by
    deadline and polling by next poll), so their cost follows the open tasks, not the table.
    With ``team``, only that team's tasks."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    oldest: dict[str, datetime] = {}
    tasks = Task.objects.all() if team is None else Task.objects.for_team(team)
    runnable = (
        tasks.filter(status__in=[TaskStatus.PENDING, TaskStatus.DELAYED])
        .order_by()
        .values_list("queue", "status")
        .annotate(n=Count("pk"), due=Min(Coalesce("next_attempt_at", "created_at")))
    )
    for queue, status, n, due in runnable:
        counts[queue][status] = n
        if status == TaskStatus.PENDING and due is not None:
            oldest[queue] = min(due, oldest.get(queue, due))
    for statuses in ([TaskStatus.PROCESSING], [TaskStatus.WAITING, TaskStatus.POLLING]):
        rows = (
            tasks.filter(status__in=statuses)
            .order_by()
            .values_list("queue", "status")
            .annotate(n=Count("pk"))
        )
        for queue, status, n in rows:
            counts[queue][status] = n
    return [
        QueueDepth(
            queue=queue,
            counts={s.value: counts[queue].get(s.value, 0) for s in OPEN_STATUSES},
            oldest_pending_age=(
                max(0.0, (now - oldest[queue]).total_seconds()) if queue in oldest else 0.0
            ),
        )
        for queue in sorted(counts)
    ]


def paused_queues() -> dict[tuple[str, str], int]:
    """Pauses in effect, by queue and scope (``all``: the operator's, for every team;
    ``team``: how many teams paused their own tasks on it). One query over a few rows."""
    out: dict[tuple[str, str], int] = {}
    rows = Queue.objects.filter(paused=True).values_list("name", "team_id")
    for name, team_id in rows:
        key = (name, "all" if team_id is None else "team")
        out[key] = out.get(key, 0) + 1
    return out


@dataclass(frozen=True)
class WebhookBacklog:
    pending: int  # events not yet delivered, failed or gone
    in_flight: int  # of which a worker holds now
    overdue: int  # of which are due and not in flight
    oldest_age: float  # seconds since the oldest pending event was created


def webhook_backlog(now: datetime) -> WebhookBacklog:
    """Pending webhook events: one aggregate over the pending partial index."""
    row = (
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING)
        .order_by()
        .aggregate(
            pending=Count("pk"),
            in_flight=Count("pk", filter=Q(lease_expires_at__isnull=False)),
            overdue=Count("pk", filter=Q(lease_expires_at__isnull=True, next_attempt_at__lte=now)),
            oldest=Min("created_at"),
        )
    )
    oldest = row["oldest"]
    return WebhookBacklog(
        pending=int(row["pending"] or 0),
        in_flight=int(row["in_flight"] or 0),
        overdue=int(row["overdue"] or 0),
        oldest_age=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
    )


#: Ranges of time left for waiting tasks: (label, upper bound in seconds or None).
TIME_LEFT_RANGES: tuple[tuple[str, int | None], ...] = (
    ("overdue", 0),
    ("< 1 min", 60),
    ("< 10 min", 600),
    ("< 1 h", 3600),
    ("< 6 h", 6 * 3600),
    ("< 24 h", 86400),
    ("≥ 24 h", None),
)


def waiting_by_time_left(now: datetime) -> list[tuple[str, int]]:
    """Waiting tasks by how long they have left before ``maxWaitTime`` times them out: one
    aggregate over the waiting partial index."""
    aggregates: dict[str, Any] = {
        f"r{i}": Count("pk", filter=Q(wait_deadline__lte=now + timedelta(seconds=bound)))
        for i, (_, bound) in enumerate(TIME_LEFT_RANGES)
        if bound is not None
    }
    row = (
        Task.objects.filter(status=TaskStatus.WAITING)
        .order_by()
        .aggregate(total=Count("pk"), **aggregates)
    )
    result, below = [], 0
    for i, (label, bound) in enumerate(TIME_LEFT_RANGES):
        cumulative = int(row[f"r{i}"] or 0) if bound is not None else int(row["total"] or 0)
        result.append((label, cumulative - below))
        below = cumulative
    return result


# -- windows (for the dashboard) ---------------------------------------------------------------


def _minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass
class Window:
    """Per-minute activity over ``[since, now]``."""

    since: datetime
    minutes: list[datetime]
    created: dict[datetime, int]
    finished: dict[str, dict[datetime, int]]  # status → minute → tasks finished
    duration_buckets: dict[datetime, dict[int | None, int]]  # minute → le (ms) → attempts

    def finished_total(self, status: str) -> int:
        return sum(self.finished.get(status, {}).values())


def _bucket_case() -> Case:
    whens = [When(duration_ms__lte=bound, then=Value(bound)) for bound in DURATION_BUCKETS_MS]
    return Case(*whens, default=Value(None), output_field=IntegerField())


def window(now: datetime, hours: int) -> Window:
    """Tasks created and finished (by status) per minute, and attempt durations per minute
    and bucket, over the last ``hours``: three grouped queries over index ranges (the
    time-ordered primary key, ``aq_task_completed_idx``, ``aq_attempt_started_idx``)."""
    since = _minute(now) - timedelta(hours=hours) + timedelta(minutes=1)
    minutes = [since + timedelta(minutes=i) for i in range(hours * 60)]
    created_rows = (
        Task.objects.filter(pk__gte=uuid7_floor(since), created_at__gte=since)
        .order_by()
        .annotate(m=Trunc("created_at", "minute", tzinfo=UTC))
        .values_list("m")
        .annotate(n=Count("pk"))
    )
    finished_rows = (
        Task.objects.filter(completed_at__gte=since)
        .order_by()
        .annotate(m=Trunc("completed_at", "minute", tzinfo=UTC))
        .values_list("m", "status")
        .annotate(n=Count("pk"))
    )
    duration_rows = (
        Attempt.objects.filter(started_at__gte=since, duration_ms__isnull=False)
        .order_by()
        .annotate(m=Trunc("started_at", "minute", tzinfo=UTC), b=_bucket_case())
        .values_list("m", "b")
        .annotate(n=Count("pk"))
    )
    finished: dict[str, dict[datetime, int]] = defaultdict(dict)
    for minute, status, n in finished_rows:
        finished[status][_minute(minute)] = n
    durations: dict[datetime, dict[int | None, int]] = defaultdict(dict)
    for minute, bound, n in duration_rows:
        durations[_minute(minute)][bound] = n
    return Window(
        since=since,
        minutes=minutes,
        created={_minute(m): n for m, n in created_rows},
        finished=dict(finished),
        duration_buckets=dict(durations),
    )


def quantile(buckets: Mapping[int | None, int], q: float) -> float | None:
    """The ``q`` quantile (ms) of a histogram of per-bucket counts (le in ms; None: above the
    last bound), interpolated linearly inside the bucket, as Prometheus'
    ``histogram_quantile`` does. None when there are no observations."""
    total = sum(buckets.values())
    if total == 0:
        return None
    rank, below, lower = q * total, 0, 0.0
    for bound in DURATION_BUCKETS_MS:
        n = buckets.get(bound, 0)
        if below + n >= rank and n:
            return lower + (bound - lower) * (rank - below) / n
        below += n
        lower = float(bound)
    return lower  # in the +Inf bucket: the last finite bound, as histogram_quantile does
