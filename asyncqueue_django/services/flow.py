"""Flow control and paused queues: the gate of a task's claim.

A task with ``flowControl {key, parallelism?, rate?, period?}`` starts only while fewer than
``parallelism`` tasks of its team with that key are ``processing`` and fewer than ``rate`` of
them started in the last ``period`` seconds. A task on a paused queue does not start at all.

How it is enforced (the engine's claim asks the adapter; see ``engine.claim`` and
``engine.claim_batch``):

- The fast claim (one statement on PostgreSQL) takes only rows without a flow key on a queue
  that is not paused: two more predicates on the row it already reads (``flow_key IS NULL``,
  and an anti-join on the paused rows of ``Queue``, a table of a handful of rows). Tasks without
  flow control pay nothing else.
- Flow-controlled rows go through :func:`claim_key`, one short transaction per key: it locks
  the key's :class:`~asyncqueue_django.models.FlowLimiter` row (an ``UPDATE``: a row lock on
  PostgreSQL, the write lock on SQLite), *then* counts the key's ``processing`` rows and reads
  the recent start times, so two workers claiming for one key take turns and each sees what
  the other committed (READ COMMITTED: every statement after the lock reads a new snapshot).
  Claims of different keys lock different rows and never wait on each other.
- Rows over the limit stay ``pending``/``delayed``: their ``next_attempt_at`` moves on (to the
  moment the rate window frees a start, or ``FLOW_CONTROL_DELAY`` for parallelism) and one
  wake-up for their queue is sent with that countdown, so a held-back key costs one claim
  transaction per delay, not one per task (the limiter row remembers the wake-up it sent,
  ``wake_at``, so passes that hold the key's rows again send no other). A finished
  flow-controlled task wakes its queue at once (a slot is free).
- A batch claim serves every due key of its queue (oldest first, up to ``MAX_KEYS_PER_BATCH``),
  each within its own limits, before the fast claim takes the rest: no key starves another,
  and ordinary tasks cannot starve flow-controlled ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Exists, Min, OuterRef, Q
from django.utils import timezone

from asyncqueue_django.conf import app_settings
from asyncqueue_django.models import FlowLimiter, Queue, Task
from asyncqueue_django.services import engine
from asyncqueue_django.services.tables import TASKS
from asyncqueue_django.states import RUNNABLE, TaskStatus

#: Most flow-control keys one batch claim serves (the oldest due first).
MAX_KEYS_PER_BATCH = 16

#: The shortest wait of a row held back by the rate (its window frees a start this soon).
MIN_WAIT = 0.01


def paused_q() -> Q:
    """Tasks on a queue that is paused for their team or for every team."""
    paused = Queue.objects.filter(paused=True, name=OuterRef("queue")).filter(
        Q(team__isnull=True) | Q(team=OuterRef("team"))
    )
    return Q(Exists(paused))


def gate_sql(table: str, connection: Any) -> str:
    """The fast claim's gate as SQL on the quoted task ``table``: no flow key, queue not
    paused (no parameters)."""
    qn = connection.ops.quote_name
    queues = qn(Queue._meta.db_table)
    return (
        f"{table}.{qn('flow_key')} IS NULL AND NOT EXISTS (SELECT 1 FROM {queues} q "  # noqa: S608
        f"WHERE q.{qn('paused')} AND q.{qn('name')} = {table}.{qn('queue')} "
        f"AND (q.{qn('team_id')} IS NULL OR q.{qn('team_id')} = {table}.{qn('team_id')}))"
    )


def due_probe_sql(connection: Any, queue: str, now: datetime) -> tuple[str, list[Any]]:
    """ "A flow-controlled task may be due on ``queue``" as a boolean SQL expression with its
    parameters: an ``EXISTS`` over ``aq_task_flow_due_idx``, which holds flow-controlled
    tasks only (empty, so one index probe, when no task uses flow control). The fast batch
    claim reads it in its own statement."""
    qn = connection.ops.quote_name
    statuses = sorted(str(s) for s in RUNNABLE)
    sql = (
        f"EXISTS (SELECT 1 FROM {qn(Task._meta.db_table)} WHERE {qn('flow_key')} IS NOT NULL "  # noqa: S608
        f"AND {qn('status')} IN ({', '.join(['%s'] * len(statuses))}) "
        f"AND {qn('queue')} = %s AND {qn('next_attempt_at')} <= %s)"
    )
    return sql, [*statuses, queue, now + engine.CLOCK_SKEW]


def gate_q() -> list[Any]:
    """:func:`gate_sql` as ORM filter arguments."""
    return [Q(flow_key__isnull=True), ~paused_q()]


def _due(now: datetime) -> Any:
    """Due, flow-controlled, on a queue that is not paused."""
    return (
        Task.objects.due(now + engine.CLOCK_SKEW).filter(flow_key__isnull=False).exclude(paused_q())
    )


def due_keys(queue: str, now: datetime, limit: int = MAX_KEYS_PER_BATCH) -> list[tuple[int, str]]:
    """``(team id, key)`` of the flow-controlled tasks due on ``queue``, the longest due first
    (``aq_task_flow_due_idx``: empty, so one index probe, when no task uses flow control)."""
    rows = (
        _due(now)
        .filter(queue=queue)
        .values("team_id", "flow_key")
        .annotate(oldest=Min("next_attempt_at"))
        .order_by("oldest")[:limit]
    )
    return [(int(r["team_id"]), str(r["flow_key"])) for r in rows]


def _lock(team_id: int, key: str, now: datetime) -> FlowLimiter:
    """The key's limiter row, locked until the transaction ends (created on first use)."""
    limiter = FlowLimiter.objects.filter(team_id=team_id, key=key)
    # An UPDATE, not SELECT … FOR UPDATE: it takes the row lock on PostgreSQL and the write
    # lock on SQLite alike, so the reads below see every claim committed before it.
    if not limiter.update(updated_at=now):
        try:
            with transaction.atomic():  # a savepoint: a concurrent first use wins the insert
                FlowLimiter.objects.create(team_id=team_id, key=key, updated_at=now)
        except IntegrityError:
            pass
        limiter.update(updated_at=now)
    return limiter.get()


def claim_key(
    kind: engine.WorkKind[Task],
    team_id: int,
    key: str,
    worker: str,
    now: datetime,
    capacity: int,
    *,
    queue: str | None = None,
    pk: Any = None,
) -> list[Task]:
    """Claim up to ``capacity`` due tasks of flow-control ``key`` of the team (only of
    ``queue``, or only the task ``pk``) as the key's limits allow; hold back the rest of those
    looked at (``next_attempt_at`` moved on, one wake-up sent for when they may start).

    The limits of the first task to start (highest priority, longest due) apply to the pass:
    tasks sharing a key are expected to share limits. Returns the claimed tasks.
    """
    using = router.db_for_write(Task)
    skip_locked = connections[using].features.has_select_for_update_skip_locked
    with transaction.atomic(using=using):  # the limiter's lock holds until the claims commit
        limiter = _lock(team_id, key, now)
        rows = _due(now).filter(team_id=team_id, flow_key=key)
        if queue is not None:
            rows = rows.filter(queue=queue)
        if pk is not None:
            rows = rows.filter(pk=pk)
        if skip_locked:  # a row a sweep or a cancel holds is left for the next pass
            rows = rows.select_for_update(skip_locked=True, of=("self",))
        candidates = list(
            rows.order_by("-priority", "next_attempt_at").values_list(
                "pk", "flow_parallelism", "flow_rate", "flow_period", "queue", "priority"
            )[:capacity]
        )
        if not candidates:
            return []
        _, parallelism, rate, period = candidates[0][:4]
        # The clock read after the lock: ``now`` may be older by the wait for it, and a start
        # recorded in the past would let the window open early.
        now = max(now, timezone.now())
        clock = now.timestamp()
        starts = [float(t) for t in limiter.starts or []]
        window = sorted(t for t in starts if rate and t > clock - (period or 1))
        allowed, busy = len(candidates), 0
        if parallelism:
            # Counted under the lock: every claim of this key that committed before it is seen.
            busy = Task.objects.filter(
                team_id=team_id, flow_key=key, status=TaskStatus.PROCESSING
            ).count()
            allowed = min(allowed, parallelism - busy)
        if rate:
            allowed = min(allowed, rate - len(window))
        allowed = max(allowed, 0)
        claimed = engine.claim_rows(kind, [c[0] for c in candidates[:allowed]], worker, now)
        changes: dict[str, Any] = {}
        if rate and claimed:
            window = (window + [clock] * len(claimed))[-rate:]
            changes["starts"] = window
        held = candidates[allowed:]
        if held:
            waits = [MIN_WAIT]
            if parallelism and busy + len(claimed) >= parallelism:
                waits.append(float(app_settings.FLOW_CONTROL_DELAY))
            if rate and len(window) >= rate:  # a start frees when the window's oldest leaves
                waits.append(window[-rate] + (period or 1) - clock)
            wake_at = now + timedelta(seconds=max(waits))
            # One wake-up per key at a time: another pass (a finished task's wake-up) holding
            # rows again sends none while the one sent still comes before they are due.
            pending = limiter.wake_at
            wake = pending is None or pending <= now or wake_at < pending
            _hold(kind, held, now, wake_at, wake)
            if wake:
                changes["wake_at"] = wake_at
        if changes:
            FlowLimiter.objects.filter(pk=limiter.pk).update(**changes)
    return claimed


def _hold(
    kind: engine.WorkKind[Task],
    held: list[tuple[Any, ...]],
    now: datetime,
    until: datetime,
    wake: bool,
) -> None:
    """Move ``held`` on to ``until`` (they stay pending/delayed) and, with ``wake``, send one
    wake-up per queue for that moment."""
    TASKS.touch(
        [h[0] for h in held], "dispatch", next_attempt_at=until, dispatched_at=now, updated_at=now
    )
    if not wake:
        return
    queues: dict[str, int] = {}
    for h in held:
        queues[h[4]] = max(queues.get(h[4], 0), int(h[5]))
    countdown = (until - now).total_seconds()
    engine.publish_on_commit(
        [
            kind.wake_message(queue, priority, countdown=countdown)
            for queue, priority in queues.items()
        ]
    )


def claim_gated(kind: engine.WorkKind[Task], pk: Any, worker: str, now: datetime) -> Task | None:
    """The task ``pk`` if it is flow-controlled, due, and its key lets it start now (else it
    is held back as :func:`claim_key` does); None otherwise. One primary-key read more than
    the fast claim, only when that took nothing (a duplicate message, or a gated row)."""
    found = (
        Task.objects.runnable()
        .filter(pk=pk, flow_key__isnull=False)
        .values_list("team_id", "flow_key")
        .first()
    )
    if found is None:
        return None
    rows = claim_key(kind, int(found[0]), str(found[1]), worker, now, 1, pk=pk)
    return rows[0] if rows else None


def claim_gated_batch(
    kind: engine.WorkKind[Task], queue: str, worker: str, now: datetime, limit: int
) -> list[Task]:
    """Due flow-controlled tasks of ``queue``, key by key (the longest due key first), each
    key within its limits, up to ``limit`` in all."""
    claimed: list[Task] = []
    for team_id, key in due_keys(queue, now):
        if len(claimed) >= limit:
            break
        claimed += claim_key(kind, team_id, key, worker, now, limit - len(claimed), queue=queue)
    return claimed


def wake_after_finish(kind: engine.WorkKind[Task], tasks: list[Task]) -> None:
    """Flow-controlled tasks that finished an attempt free a slot of their key: wake their
    queues (coalesced) so a held-back task starts without waiting out its delay."""
    for task in tasks:
        if task.flow_key is not None:
            engine.wakeups.add(kind, task.queue, task.priority)
