"""The one engine for outbound work: guarded writes, claim with a lease, finish an attempt,
the retry decision, dispatch on commit, the due/lost/stale-lease sweeps, and publishing.

Each kind of outbound work (a task's callback, a webhook event; later a provider poll or a
scheduled tick) is a small :class:`WorkKind` adapter: which rows (a :class:`Table`), which
Celery task runs them, how long a lease lasts, what an outcome means, how an attempt is
recorded. Everything else is written here once.

Every write that depends on a status goes through a :class:`Table`: :meth:`Table.move` for a
change of status (its ``WHERE status IN (...)`` comes from the kind's transition table in
``states.py``), :meth:`Table.touch` for a write that keeps the status (claim, dispatch, …).
0 rows is the normal answer "someone else won", never an exception.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from django.db import connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F

from asyncqueue_django.conf import app_settings
from asyncqueue_django.jsonvalue import storable_headers, storable_text
from asyncqueue_django.querysets import OutboundQuerySet, status_in
from asyncqueue_django.services.rawsql import (
    _column_list,
    _hydrate,
    _related_select,
    _returning,
)
from asyncqueue_django.states import Lifecycle
from asyncqueue_django.values import CallOutcome, Message, RetryDecision

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=models.Model)
C = TypeVar("C", bound=CallOutcome)

#: Tolerated clock skew between the machine that set a due time and the one claiming the row.
CLOCK_SKEW = timedelta(seconds=1)

#: What a lost attempt (its worker died; the lease ran out) is recorded as.
WORKER_LOST = "worker lost (lease expired)"

#: Longest error text stored for an attempt (the column is a TextField; this keeps rows small).
MAX_ATTEMPT_ERROR_LENGTH = 2000

#: The Celery task a wake-up message runs: claim a batch of due rows of one kind and queue.
WAKE_TASK = "asyncqueue.run_due"


# --------------------------------------------------------------------------------------------
# Guarded writes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table(Generic[M]):
    """The rows of one kind of work and the lifecycle that guards every write to them."""

    model: type[M]
    lifecycle: Lifecycle

    def objects(self) -> OutboundQuerySet[M]:
        return self.model._default_manager.all()  # type: ignore[return-value]

    def _rows(self, pk: Any, sources: Iterable[str], filters: dict[str, Any] | None) -> Any:
        qs = self.objects().filter(status_in(sources), **(filters or {}))
        return qs.filter(pk__in=pk) if isinstance(pk, list | tuple) else qs.filter(pk=pk)

    def move(
        self,
        pk: Any,
        to: str,
        *,
        now: datetime,
        among: frozenset[Any] | None = None,
        filters: dict[str, Any] | None = None,
        **fields: Any,
    ) -> int:
        """Move the row(s) ``pk`` (one id, or a list) to ``to`` from a status the lifecycle
        allows (restricted to ``among``); returns how many rows moved."""
        sources = self.lifecycle.sources_for(to, among)
        return int(self._rows(pk, sources, filters).update(status=to, updated_at=now, **fields))

    def touch(
        self, pk: Any, operation: str, *, filters: dict[str, Any] | None = None, **fields: Any
    ) -> int:
        """Write ``fields`` to the row(s) ``pk`` if they are in a status where the in-place
        write ``operation`` is allowed; the status stays. Returns how many rows were written."""
        sources = self.lifecycle.guard(operation)
        return int(self._rows(pk, sources, filters).update(**fields))


# --------------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------------

Publisher = Callable[[Message], None]

#: Sends one message to the broker. ``AppConfig.ready`` wires ``broker.publish`` in, so the
#: write path does not import Celery; tests may put a recorder here.
publisher: Publisher | None = None


def set_publisher(new: Publisher | None) -> Publisher | None:
    """Install ``new`` as the publisher; returns the previous one."""
    global publisher
    previous, publisher = publisher, new
    return previous


def publish(message: Message) -> bool:
    """Send one message. False (logged) if the broker refused it: the row is already
    committed, and the recovery sweep re-sends it after ``DISPATCH_GRACE``."""
    try:
        if publisher is None:
            raise RuntimeError("no publisher: is asyncqueue_django in INSTALLED_APPS?")
        publisher(message)
    except Exception:
        logger.warning(
            "Could not enqueue %s %s; the recovery sweep will dispatch it",
            message.task_name,
            message.args[0] if message.args else "",
            exc_info=True,
        )
        return False
    return True


def _publish_all(messages: list[Message]) -> None:
    for message in messages:
        publish(message)


def publish_on_commit(messages: list[Message]) -> None:
    """Publish ``messages`` once the current transaction commits (at once in autocommit)."""
    if messages:
        transaction.on_commit(functools.partial(_publish_all, messages), robust=True)


def wake_slot(countdown: float, now: float | None = None) -> float | None:
    """When (epoch seconds) to wake a worker for a row due in ``countdown`` seconds; None for a
    row due now. The due time is rounded up to a grid whose step is a power of two no coarser
    than an eighth of the countdown (1/64 s to 8 s): rows that fall due close together (the
    retries of one batch, jitter and all) share one wake-up, none is woken before it is due,
    and none more than an eighth of its wait after."""
    if countdown <= 0:
        return None
    due = (time.time() if now is None else now) + countdown
    step = 2.0 ** max(-6, min(3, math.floor(math.log2(countdown / 8))))
    return math.ceil(due / step) * step


#: What a wake-up is for: the kind's name, the queue, and when (None: now; else a
#: :func:`wake_slot`).
WakeKey = tuple[str, str, float | None]


class WakeUps:
    """Coalesced wake-up messages. A wake-up means "due work of this kind on this queue": the
    worker it wakes claims up to ``BATCH_SIZE`` due rows at once (:func:`claim_batch`), and a
    batch that comes back full passes the wake-up on (the queue may hold more), so one message
    stands for a batch, not for one row, and a backlog fans out over the worker's threads.

    Commits add to it (:func:`wake_on_commit`): rows due now, and rows due shortly (a short
    retry or delay), which share a wake-up sent with a countdown for their :func:`wake_slot`.
    A wake-up carries the highest priority of what it stands for; the batch it wakes claims
    the highest priority first. When no wake-up is being published, the committing thread
    publishes its own at once (no hand-off, so no added latency); while one is, later commits
    only record theirs and return, and what accumulated is published as one message per kind,
    queue and slot by a sender thread when the publish in progress is over. So a burst of
    commits shares a few messages, and only the first of them waits for the broker. A thread
    that settles many rows at once adds their wake-ups :meth:`together`.

    A wake-up that finds nothing due (a duplicate, or its rows taken by an earlier batch)
    costs one claim statement. One that is never sent (broker down, process killed before it
    was published) is a lost message like any other: its rows are committed and due, and the
    recovery sweep dispatches them after ``DISPATCH_GRACE``.
    """

    def __init__(self) -> None:
        self._reset()
        atexit.register(self.flush)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._pending: dict[WakeKey, tuple[WorkKind[Any], int, int]] = {}
        self._sending = False  # a publish is in progress (inline or on the sender thread)
        self._thread: threading.Thread | None = None
        self._held = threading.local()  # threads inside together()

    def add(
        self,
        kind: WorkKind[Any],
        queue: str,
        priority: int,
        count: int = 1,
        *,
        at: float | None = None,
    ) -> None:
        """``count`` rows of ``kind`` became due on ``queue`` (committed), or become due at
        the :func:`wake_slot` ``at``."""
        if self._pid != os.getpid():  # a forked child starts with no thread and no backlog
            self._reset()
        with self._lock:
            key = (kind.name, queue, at)
            entry = self._pending.get(key)
            if entry is not None:
                count, priority = entry[1] + count, max(entry[2], priority)
            self._pending[key] = (kind, count, priority)
        if not getattr(self._held, "on", False):
            self._kick()

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Inside the block, this thread's wake-ups are only recorded; they are published at
        its end, one per kind, queue and slot (not one by one as each row is settled)."""
        if self._pid != os.getpid():
            self._reset()
        if getattr(self._held, "on", False):
            yield
            return
        self._held.on = True
        try:
            yield
        finally:
            self._held.on = False
            self._kick()

    def _kick(self) -> None:
        """Publish what is pending from this thread, unless a publish is in progress (it is
        followed by ours)."""
        with self._lock:
            if self._sending or not self._pending:
                return
            self._sending = True
            batch = self._take()
        try:
            self._send(batch)
        finally:
            self._done_sending()

    def _done_sending(self) -> None:
        with self._lock:
            if not self._pending:
                self._sending = False
                return
            # More came in meanwhile: the sender thread publishes it (this caller returns).
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="asyncqueue-wakeups", daemon=True
                )
                self._thread.start()
            self._ready.notify()

    def _take(self) -> dict[WakeKey, tuple[WorkKind[Any], int, int]]:
        pending, self._pending = self._pending, {}
        return pending

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (self._pending and self._sending):
                    self._ready.wait()
                batch = self._take()
            try:
                self._send(batch)
            finally:
                with self._lock:
                    if not self._pending:
                        self._sending = False

    @staticmethod
    def _send(batch: dict[WakeKey, tuple[WorkKind[Any], int, int]]) -> None:
        # Higher priorities first; a countdown is counted from now (the slot is a time).
        for (_, queue, at), (kind, _count, priority) in sorted(
            batch.items(), key=lambda item: -item[1][2]
        ):
            countdown = 0.0 if at is None else max(0.0, at - time.time())
            publish(kind.wake_message(queue, priority, countdown, due_by=at))

    def flush(self) -> None:
        """Send what is pending now, from the calling thread (at exit, and in tests)."""
        if self._pid != os.getpid():
            return
        with self._lock:
            batch = self._take()
        self._send(batch)


wakeups = WakeUps()


def wake_on_commit(kind: WorkKind[Any], queue: str, priority: int, countdown: float = 0) -> None:
    """Once the current transaction commits, wake a worker for the due rows of ``kind`` on
    ``queue`` (see :class:`WakeUps`), now or, for rows due in ``countdown`` seconds, then. A
    transaction that makes many rows due on one queue (a bulk create, a sweep's retries)
    registers one wake-up for those due at about the same time, not one each."""
    at = wake_slot(countdown)
    connection = transaction.get_connection()
    if not connection.in_atomic_block:  # autocommit: the row is committed already
        wakeups.add(kind, queue, priority, at=at)
        return
    # One hook per kind, queue and slot per transaction: the hook list is replaced at every
    # commit, rollback and savepoint rollback, so a stale mark only ever costs a second hook.
    hooks: Any
    marked: dict[WakeKey, list[int]]
    hooks, marked = getattr(connection, "_asyncqueue_wakes", (None, {}))
    if hooks is not connection.run_on_commit:
        marked = {}
        connection._asyncqueue_wakes = (connection.run_on_commit, marked)
    key = (kind.name, queue, at)
    if key in marked:
        marked[key][0] = max(marked[key][0], priority)
        return
    top = [priority]
    marked[key] = top
    transaction.on_commit(lambda: wakeups.add(kind, queue, top[0], at=at), robust=True)


# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt as it is logged: by a worker that reported (``call``), or lost with it."""

    number: int
    started_at: datetime
    call: CallOutcome | None
    error: str
    outcome: str
    worker: str

    @property
    def duration_ms(self) -> int | None:
        return self.call.duration_ms if self.call else None

    @property
    def status_code(self) -> int | None:
        return self.call.status_code if self.call else None


@dataclass
class Outcome:
    """Where an attempt leaves a row: the status, the fields to write with it, a countdown for
    the next message (a short retry), and how the attempt is recorded."""

    to: str
    fields: dict[str, Any] = field(default_factory=dict)
    countdown: float | None = None
    attempt_outcome: str = ""


class WorkKind(Generic[M]):
    """What the engine needs to know about one kind of outbound work."""

    #: Read in logs ("task", "webhook").
    name: str
    #: The Celery task (by name) that runs one attempt.
    task_name: str
    table: Table[M]
    #: Related rows a worker needs with a claimed row (one query).
    related: tuple[str, ...] = ()
    #: Statuses a row may be claimed from, and the status a claim moves it to (None: the
    #: status stays and the claim is the lifecycle's in-place "claim" write).
    claim_from: frozenset[Any]
    claim_to: str | None = None
    #: Statuses in which a worker holds the row under a lease.
    in_flight: frozenset[Any]
    #: Fields of a row read to build its message in a dispatch batch (after the pk).
    message_fields: tuple[str, ...] = ()
    #: Whether wake-ups run this kind (``asyncqueue.run_due`` claims its due rows in batches,
    #: see :class:`WakeUps`); a kind without them is sent one :meth:`message` per row.
    wakes: bool = False

    def message(self, pk: Any, *values: Any, countdown: float = 0) -> Message:
        raise NotImplementedError

    def wake_target(self, *values: Any) -> tuple[str, int]:
        """The queue and priority of the wake-up for a row whose :attr:`message_fields` hold
        ``values``."""
        raise NotImplementedError

    def lease_seconds(self, row: M) -> float:
        """How long one attempt may take: the call's own bound plus ``LEASE_MARGIN``."""
        raise NotImplementedError

    def claim_filters(self) -> dict[str, Any]:
        return {}

    def on_claim(self, row: M, now: datetime) -> dict[str, Any]:
        """Extra fields a claim writes."""
        return {}

    def released(self) -> dict[str, Any]:
        """Fields that end a lease when an attempt is settled."""
        return {"lease_expires_at": None}

    def decide(self, row: M, call: CallOutcome, now: datetime) -> Outcome:
        """The outcome of the attempt ``call`` on the freshly locked ``row``."""
        raise NotImplementedError

    def decide_lost(self, row: M, now: datetime) -> Outcome:
        """The outcome of an attempt whose worker died."""
        raise NotImplementedError

    def record_attempt(self, row: M, attempt: AttemptRecord) -> None:
        """Log ``attempt`` of ``row`` (inside the transaction that settles it)."""
        log = self.attempt_row(row, attempt)
        if log is None:
            raise NotImplementedError
        log.save(force_insert=True)

    def after_move(self, row: M, to: str, now: datetime) -> None:
        """Inside the transaction of a settled attempt (e.g. a task's terminal event)."""

    # -- the fast path: what a claim and a finish write, as data the engine turns into SQL

    def attempt_row(self, row: M, attempt: AttemptRecord) -> models.Model | None:
        """The (unsaved) log row of ``attempt``; :meth:`record_attempt` saves it. A kind that
        only overrides :meth:`record_attempt` returns None here: its attempts are settled on
        the locked row (a read and a transaction more, nothing else lost)."""
        return None

    def terminal_rows(
        self, row: M, to: str, now: datetime
    ) -> tuple[list[models.Model], Callable[[], None] | None]:
        """The (unsaved) rows a move of ``row`` to ``to`` creates with it (a task's terminal
        event), and what to announce once they are committed (call inside the transaction)."""
        return [], None

    def finish_guard(self, row: M) -> dict[str, Any]:
        """Columns whose value at claim time :meth:`decide` relied on, and that someone else
        may change while the worker holds the row (a task's early signal): the one-statement
        finish requires them unchanged, else it settles the attempt on the locked row."""
        return {}

    def lease_sql(self) -> tuple[str, list[Any]] | None:
        """SQL for :meth:`lease_seconds` of the row being claimed, with its parameters; None
        (a kind without it) claims by reading the row, then updating it."""
        return None

    def claim_sql(self, now: datetime) -> tuple[list[str], list[Any]]:
        """SQL for :meth:`on_claim`: ``SET`` items and their parameters."""
        return [], []

    def claim_where_sql(self) -> str:
        """SQL for :meth:`claim_filters` (no parameters; ``""`` for none)."""
        return ""

    # -- the gate: rows the fast claim leaves to a slower path of the kind's own (a task under
    #    flow control, a paused queue). A kind without one pays nothing for it.

    def gate_sql(self, table: str) -> str:
        """SQL a row (of the quoted ``table``) must meet to be claimed on the fast path (no
        parameters; ``""`` for none)."""
        return ""

    def gate_q(self) -> list[Any]:
        """:meth:`gate_sql` as ORM filter arguments (for the read-then-update claim)."""
        return []

    def claim_gated(self, pk: Any, worker: str, now: datetime) -> M | None:
        """Claim the row ``pk`` the fast claim did not take, if the gate held it back and lets
        it start now (see :func:`claim_rows`); None otherwise."""
        return None

    def claim_gated_batch(self, queue: str, worker: str, now: datetime, limit: int) -> list[M]:
        """Up to ``limit`` due rows of ``queue`` that the gate holds back and lets start now
        (see :func:`claim_rows`), after the fast claim of a batch said there are some."""
        return []

    def gated_due_sql(self, queue: str, now: datetime) -> tuple[str, list[Any]] | None:
        """A boolean SQL expression (and its parameters): "rows the gate holds back may be due
        on ``queue``". The fast batch claim returns it with its rows (no round trip more);
        true sends the batch through :meth:`claim_gated_batch`. None: the kind has no gate."""
        return None

    def batch_filters(self, queue: str) -> tuple[dict[str, Any], str, list[Any], str]:
        """Which due rows a wake-up for ``queue`` claims, and in which order: ORM filters,
        the same as SQL with its parameters, and the SQL ``ORDER BY``."""
        return {}, "TRUE", [], "next_attempt_at"

    def wake_message(
        self, queue: str, priority: int, countdown: float = 0, due_by: float | None = None
    ) -> Message:
        """A wake-up: "due work of this kind on ``queue``, due by ``due_by``" (epoch seconds
        on this process's clock; default: now + ``countdown``), sent as ``asyncqueue.run_due``.
        The batch it wakes claims rows due by then (or by the worker's own now, if later), so a
        wake-up runs nothing early, whatever the two clocks say."""
        due = time.time() + countdown if due_by is None else due_by
        return Message(WAKE_TASK, (self.name, queue, f"{due:.6f}"), queue, priority, countdown)

    # -- the retry policy's shape, common to every kind

    @staticmethod
    def retry_decision(retry_number: int, delay: float | None) -> RetryDecision:
        """A short delay rides a broker countdown; a longer one is left to the due sweep."""
        short = delay is not None and delay <= app_settings.COUNTDOWN_MAX
        return RetryDecision(retry_number, delay, delay if short else None)

    @staticmethod
    def retry_fields(decision: RetryDecision, now: datetime) -> dict[str, Any]:
        assert decision.delay is not None
        return {
            "retry_count": decision.retry_number,
            "next_attempt_at": now + timedelta(seconds=decision.delay),
            "dispatched_at": now if decision.countdown is not None else None,
        }

    def publish_on_commit(self, pk: Any, row: M | None = None, countdown: float = 0) -> None:
        """Once committed, have the row ``pk`` run when it is due: now, or in ``countdown``
        seconds (a short delay or retry). A kind run by wake-ups wakes its queue (coalesced,
        claimed in a batch); another is sent a message for this one row."""
        values = tuple(getattr(row, f) for f in self.message_fields) if row is not None else ()
        if self.wakes:
            wake_on_commit(self, *self.wake_target(*values), countdown=countdown)
        else:
            publish_on_commit([self.message(pk, *values, countdown=countdown)])


# --------------------------------------------------------------------------------------------
# Claim and finish
# --------------------------------------------------------------------------------------------


def storable_call(call: C) -> C:
    """``call`` with everything a target or receiver controls made storable on every database
    backend (header names and values, error texts quoting what it sent); the body stays bytes
    and is cleaned where it is stored.

    :func:`finish` passes every result through here first, so nothing a peer answers can make
    an attempt unrecordable.
    """
    return dataclasses.replace(  # type: ignore[type-var]
        call,
        headers=storable_headers(call.headers, app_settings.MAX_STORED_RESPONSE_BYTES),
        error=storable_text(call.error)[:MAX_ATTEMPT_ERROR_LENGTH],
        final_url=storable_text(getattr(call, "final_url", "")),
    )


def without_response(call: C, reason: str) -> C:
    """``call`` without the peer's headers and body, which could not be stored (``reason``
    names the error): the status code, duration and outcome are kept, so the attempt is
    recorded and a target that already answered 2xx is not called again."""
    note = f"[the response could not be stored: {reason}]"
    return dataclasses.replace(  # type: ignore[type-var]
        call, headers={}, body=note.encode(), truncated=False
    )


def _connection(kind: WorkKind[Any]) -> BaseDatabaseWrapper:
    return connections[router.db_for_write(kind.table.model)]


def connection_of(kind: WorkKind[Any]) -> BaseDatabaseWrapper:
    """The connection the rows of ``kind`` are written through (for an adapter's SQL)."""
    return _connection(kind)


# The SQL below is built from quoted identifiers of the models' metadata and fixed fragments
# of the adapters; every value is a parameter (hence the S608 exemptions).


def claim(kind: WorkKind[M], pk: Any, worker: str, now: datetime) -> M | None:
    """A due, claimable row → leased to ``worker`` for one attempt; None if not claimable.

    None is the normal answer to a duplicate or late message: someone else claimed the row,
    it is done, cancelled, in flight elsewhere, or not due yet.

    On PostgreSQL one round trip: a guarded ``UPDATE … RETURNING`` joined to the related rows
    the worker needs (the team that signs the request). A row the kind's gate holds back is
    left to :meth:`WorkKind.claim_gated` (asked only when the fast claim took nothing).
    """
    connection = _connection(kind)
    if _returning(connection) and kind.lease_sql() is not None:
        qn = connection.ops.quote_name
        pk_column = qn(kind.table.model._meta.pk.column)
        rows = _claim_returning(kind, f"{pk_column} = %s", [pk], worker, now, connection)
        row = rows[0] if rows else None
    else:
        row = _claim_read_then_update(kind, pk, worker, now)
    # Only when the fast claim took nothing: a row the kind's gate holds back (flow control).
    return row if row is not None else kind.claim_gated(pk, worker, now)


def claim_rows(kind: WorkKind[M], pks: Sequence[Any], worker: str, now: datetime) -> list[M]:
    """The rows ``pks`` (due, claimable) leased to ``worker``, past the kind's gate: for the
    kind's gated path, which decided under its own lock that they may start. Rows someone
    else took meanwhile are left out."""
    if not pks:
        return []
    connection = _connection(kind)
    if _returning(connection) and kind.lease_sql() is not None:
        pk_column = connection.ops.quote_name(kind.table.model._meta.pk.column)
        marks = ", ".join(["%s"] * len(pks))
        return _claim_returning(
            kind, f"{pk_column} IN ({marks})", list(pks), worker, now, connection, gated=False
        )
    claimed = [_claim_read_then_update(kind, pk, worker, now, gated=False) for pk in pks]
    return [row for row in claimed if row is not None]


def claim_batch(
    kind: WorkKind[M],
    queue: str,
    worker: str,
    now: datetime,
    limit: int,
    due_by: datetime | None = None,
) -> list[M]:
    """Up to ``limit`` due, claimable rows of ``kind`` on ``queue``, in the kind's order
    (a task's priority first), each leased to ``worker`` for one attempt.

    Due means due by ``due_by`` (the time the wake-up was sent for, on its sender's clock) or by
    ``now``, whichever is later: a row due a moment after the one the wake-up is for waits for
    its own (a poll every second stays one a second). Without ``due_by`` (a wake-up from an
    older release), due by ``now`` plus ``CLOCK_SKEW``.

    On PostgreSQL one round trip: ``SELECT … FOR UPDATE SKIP LOCKED LIMIT n`` inside one
    guarded ``UPDATE … RETURNING`` (rows another worker is claiming are skipped, not waited
    for). Elsewhere (SQLite: one writer at a time) the due rows are read, then each is claimed
    with its own guarded UPDATE; a row someone else took in between is left out.

    Rows the kind's gate holds back (a task under flow control, one on a paused queue) are not
    taken by that statement; it also answers whether such rows may be due (the kind's
    :meth:`WorkKind.gated_due_sql`), and only then does the kind's own path claim them
    (:meth:`WorkKind.claim_gated_batch`), with the rest of the batch or at least a quarter.
    """
    cutoff = now + CLOCK_SKEW if due_by is None else max(now, due_by)
    rows, gated_due = _claim_batch_fast(kind, queue, worker, now, limit, cutoff)
    if gated_due:
        # Rows the kind's gate holds back (flow control) are due too: they get what the fast
        # claim left of the batch, and at least a quarter of it, so a busy queue of ordinary
        # rows cannot starve them (their own limits bound them).
        rows += kind.claim_gated_batch(queue, worker, now, max(limit - len(rows), limit // 4, 1))
    if rows and len(rows) >= limit:  # full: there may be more; another thread takes them
        # For the same rows: those due by the sender's time, even when it is ahead of ours.
        ahead = due_by.timestamp() if due_by is not None and due_by > now else None
        wakeups.add(kind, queue, max(int(getattr(r, "priority", 5)) for r in rows), at=ahead)
    return rows


def _claim_batch_fast(
    kind: WorkKind[M], queue: str, worker: str, now: datetime, limit: int, cutoff: datetime
) -> tuple[list[M], bool]:
    """The fast claim of a batch (rows due by ``cutoff``), and whether rows the kind's gate
    holds back may be due."""
    filters, where, params, order = kind.batch_filters(queue)
    probe = kind.gated_due_sql(queue, now)
    connection = _connection(kind)
    gated_due: list[bool] = []
    if _returning(connection) and kind.lease_sql() is not None:
        model = kind.table.model
        qn = connection.ops.quote_name
        pk_column, table = qn(model._meta.pk.column), qn(model._meta.db_table)
        guard, guard_params = _claim_guard(kind, now, connection, cutoff=cutoff)
        # Picked once (MATERIALIZED): a subquery in the UPDATE's WHERE may be run again by
        # the planner and pick more than ``limit`` rows.
        pick = (
            f"p AS MATERIALIZED (SELECT {pk_column} FROM {table} WHERE {guard} AND ({where}) "  # noqa: S608
            f"ORDER BY {order} LIMIT %s FOR UPDATE SKIP LOCKED), "
        )
        rows = _claim_returning(
            kind,
            f"{pk_column} IN (SELECT {pk_column} FROM p)",  # noqa: S608
            [],
            worker,
            now,
            connection,
            pick=(pick, [*guard_params, *params, limit]),
            order=", ".join(f"c.{item}" for item in order.split(", ")),
            probe=probe,
            probed=gated_due,
            cutoff=cutoff,
        )
    else:
        due = kind.table.objects().due(cutoff).filter(**filters, **kind.claim_filters())
        due = due.filter(*kind.gate_q())
        order_by = [f"-{o.split()[0]}" if o.endswith("DESC") else o for o in order.split(", ")]
        pks = list(due.order_by(*order_by).values_list("pk", flat=True)[:limit])
        claimed = [
            _claim_read_then_update(kind, pk, worker, now, gated=False, cutoff=cutoff) for pk in pks
        ]
        rows = [row for row in claimed if row is not None]
        if probe is not None:  # in-process on SQLite: a query more costs next to nothing
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {probe[0]}", probe[1])
                gated_due.append(bool(cursor.fetchone()[0]))
    return rows, any(gated_due)


def _claim_read_then_update(
    kind: WorkKind[M],
    pk: Any,
    worker: str,
    now: datetime,
    *,
    gated: bool = True,
    cutoff: datetime | None = None,
) -> M | None:
    # With its related rows (the team signs the request). No ORDER BY for one row. The gate
    # is read with the row (one writer at a time on SQLite; elsewhere the SQL claim is used).
    rows = kind.table.objects().select_related(*kind.related).filter(pk=pk)
    row = (rows.filter(*kind.gate_q()) if gated else rows).order_by().first()
    if row is None or row.status not in kind.claim_from:  # type: ignore[attr-defined]
        return None
    attempt: int = row.attempt_count  # type: ignore[attr-defined]
    changes: dict[str, Any] = {
        "leased_by": worker,
        "claimed_at": now,
        "lease_expires_at": now + timedelta(seconds=kind.lease_seconds(row)),
        **kind.on_claim(row, now),
    }
    # The attempt count read above is part of the guard: if it moved, the row we hold is
    # stale and someone else's claim won. Due by the batch's cutoff, else with a little clock
    # skew (a row picked for a batch may have been run and moved on since it was picked).
    filters = {
        "next_attempt_at__lte": now + CLOCK_SKEW if cutoff is None else cutoff,
        "attempt_count": attempt,
        **kind.claim_filters(),
    }
    if kind.claim_to is not None:
        moved = kind.table.move(
            pk,
            kind.claim_to,
            now=now,
            among=kind.claim_from,
            filters=filters,
            attempt_count=F("attempt_count") + 1,
            **changes,
        )
    else:
        moved = kind.table.touch(
            pk,
            "claim",
            filters=filters,
            attempt_count=F("attempt_count") + 1,
            updated_at=now,
            **changes,
        )
    if not moved:
        return None
    # The guarded UPDATE matched the row as read, so the claimed row is the one in memory with
    # these fields changed: no second read.
    for name, value in changes.items():
        setattr(row, name, value)
    row.attempt_count = attempt + 1  # type: ignore[attr-defined]
    row.updated_at = now  # type: ignore[attr-defined]
    if kind.claim_to is not None:
        row.status = kind.claim_to  # type: ignore[attr-defined]
    return row


def _claim_guard(
    kind: WorkKind[Any],
    now: datetime,
    connection: BaseDatabaseWrapper,
    gated: bool = True,
    cutoff: datetime | None = None,
) -> tuple[str, list[Any]]:
    """The ``WHERE`` of a claim: a claimable status, due by ``cutoff`` (default: now with a
    little clock skew), the kind's own condition (a webhook event not in flight elsewhere),
    and its gate (unless the gated path claims)."""
    qn = connection.ops.quote_name
    statuses = sorted(str(s) for s in kind.claim_from)
    gate = kind.gate_sql(qn(kind.table.model._meta.db_table)) if gated else ""
    extra = " AND ".join(part for part in (kind.claim_where_sql(), gate) if part)
    guard = (
        f"{qn('status')} IN ({', '.join(['%s'] * len(statuses))}) "
        f"AND {qn('next_attempt_at')} <= %s" + (f" AND {extra}" if extra else "")
    )
    return guard, [*statuses, now + CLOCK_SKEW if cutoff is None else cutoff]


def _claim_returning(
    kind: WorkKind[M],
    where: str,
    where_params: list[Any],
    worker: str,
    now: datetime,
    connection: BaseDatabaseWrapper,
    *,
    pick: tuple[str, list[Any]] = ("", []),
    order: str = "",
    gated: bool = True,
    probe: tuple[str, list[Any]] | None = None,
    probed: list[bool] | None = None,
    cutoff: datetime | None = None,
) -> list[M]:
    """The guarded claim as one ``UPDATE … RETURNING`` joined to the related rows. With
    ``probe`` (a boolean SQL expression), its value is appended to ``probed``, read in the
    same statement: the rows come back LEFT JOINed to a one-row probe, so it answers even
    when nothing was claimed."""
    model = kind.table.model
    qn = connection.ops.quote_name
    lease_sql = kind.lease_sql()
    assert lease_sql is not None
    lease, lease_params = lease_sql
    extra_sets, extra_params = kind.claim_sql(now)
    sets = [
        f"{qn('attempt_count')} = {qn('attempt_count')} + 1",
        f"{qn('leased_by')} = %s",
        f"{qn('claimed_at')} = %s",
        f"{qn('lease_expires_at')} = %s + make_interval(secs => {lease})",
        f"{qn('updated_at')} = %s",
        *extra_sets,
    ]
    params: list[Any] = [worker, now, now, *lease_params, now, *extra_params]
    if kind.claim_to is not None:
        sets.append(f"{qn('status')} = %s")
        params.append(str(kind.claim_to))
    guard, guard_params = _claim_guard(kind, now, connection, gated, cutoff)
    select, joins, plan = _related_select(model, kind.related, connection)
    claimed = (
        f"WITH {pick[0]}c AS (UPDATE {qn(model._meta.db_table)} SET {', '.join(sets)} "  # noqa: S608
        f"WHERE {where} AND {guard} RETURNING {_column_list(model, connection)}) "
    )
    statement_params = [*pick[1], *params, *where_params, *guard_params]
    if probe is None:
        sql = f"{claimed}SELECT {select} FROM c{joins}"  # noqa: S608
    else:
        sql = (
            f"{claimed}SELECT ({probe[0]}), {select} "  # noqa: S608
            f"FROM (SELECT 1) one LEFT JOIN (c{joins}) ON TRUE"
        )
        statement_params += probe[1]
    with connection.cursor() as cursor:
        cursor.execute(sql + (f" ORDER BY {order}" if order else ""), statement_params)
        fetched = cursor.fetchall()
    db = router.db_for_write(model)
    if probe is not None:
        if probed is not None:
            probed.append(bool(fetched[0][0]) if fetched else False)
        # The probe's own row has no claimed row when nothing was claimed (NULL primary key).
        fetched = [values[1:] for values in fetched if values[1] is not None]
    return [_hydrate(plan, values, connection, db) for values in fetched]


def finish(
    kind: WorkKind[M],
    row: M,
    call: CallOutcome,
    *,
    worker: str,
    now: datetime,
    fields: dict[str, Any] | None = None,
) -> str | None:
    """Record the attempt ``worker`` made after :func:`claim` and move the row on (the kind's
    :meth:`WorkKind.decide` says where). Returns the new status, or None when the worker no
    longer holds the lease (the recovery sweep took the row over): then nothing is written.

    The normal case is one statement on PostgreSQL (one short transaction elsewhere): the
    guarded move, the attempt row and a terminal event together, decided on the row as
    claimed. The guard holds the lease and every column the decision read that someone else
    may change meanwhile (an early signal); if it matched nothing, the attempt is settled
    again on the locked row (:func:`_finish_locked`), which also tells a lost lease apart.
    """
    return finish_many(kind, [(row, call, fields)], worker=worker, now=now)[0]


@dataclass
class _Settled:
    """One attempt's outcome, decided on the row as claimed, ready to be written."""

    row: Any
    call: CallOutcome
    fields: dict[str, Any] | None
    outcome: Outcome
    changes: dict[str, Any]
    held: dict[str, Any]
    inserts: list[models.Model]
    announce: Callable[[], None] | None
    locked_only: bool = False  # the kind gives no attempt row: settle it on the locked row


def _settle(
    kind: WorkKind[M],
    row: M,
    call: CallOutcome,
    worker: str,
    now: datetime,
    fields: dict[str, Any] | None,
) -> _Settled:
    number: int = row.attempt_count  # type: ignore[attr-defined]
    call = storable_call(call)
    outcome = kind.decide(row, call, now)
    changes = {**kind.released(), **outcome.fields, **(fields or {})}
    started = now - timedelta(milliseconds=call.duration_ms)
    record = AttemptRecord(number, started, call, call.error, outcome.attempt_outcome, worker)
    events, announce = kind.terminal_rows(row, outcome.to, now)
    held = {"leased_by": worker, "attempt_count": number, **kind.finish_guard(row)}
    log = kind.attempt_row(row, record)
    inserts = [log, *events] if log is not None else []
    return _Settled(row, call, fields, outcome, changes, held, inserts, announce, log is None)


def _announce(kind: WorkKind[Any], settled: _Settled) -> None:
    if settled.announce is not None:
        settled.announce()
    if settled.outcome.countdown is not None:
        kind.publish_on_commit(settled.row.pk, settled.row, countdown=settled.outcome.countdown)


def _write_orm(
    kind: WorkKind[Any], settled: _Settled, now: datetime, connection: BaseDatabaseWrapper
) -> bool:
    """Write one settled attempt with ORM statements (call inside a transaction); True if
    its guard still held."""
    filters = {**settled.held, "lease_expires_at__isnull": False}
    moved = bool(
        kind.table.move(
            settled.row.pk,
            settled.outcome.to,
            now=now,
            among=kind.in_flight,
            filters=filters,
            **settled.changes,
        )
    )
    for instance in settled.inserts if moved else ():
        instance.save(force_insert=True, using=connection.alias)
    return moved


def _shape(settled: _Settled) -> tuple[Any, ...]:
    """Attempts of one shape (same new status, same columns, same rows to insert) are
    written by one statement."""
    return (
        settled.outcome.to,
        tuple(settled.changes),
        tuple(settled.held),
        tuple(type(i) for i in settled.inserts),
    )


@wakeups.together()  # the batch's retries and events share their wake-ups
def finish_many(
    kind: WorkKind[M],
    items: Sequence[tuple[M, CallOutcome, dict[str, Any] | None]],
    *,
    worker: str,
    now: datetime,
) -> list[str | None]:
    """:func:`finish` for several attempts (``(row, call, extra fields)``) at once. On
    PostgreSQL one statement per shape of outcome (usually one for the whole batch: every
    guarded move, attempt row and terminal event in it, committed by itself); elsewhere one
    transaction. Returns each row's new status, or None where the lease was lost. If it fails,
    nothing of it is written (the caller may record the attempts one by one).
    """
    everything = [_settle(kind, row, call, worker, now, fields) for row, call, fields in items]
    settled = [one for one in everything if not one.locked_only]
    connection = _connection(kind)
    moved: set[Any] = set()
    if not settled:
        pass
    elif _returning(connection):
        groups: dict[tuple[Any, ...], list[_Settled]] = {}
        for one in settled:
            groups.setdefault(_shape(one), []).append(one)
        if len(groups) == 1 and not connection.in_atomic_block:
            moved = _finish_rows(kind, settled, now, connection)  # commits by itself
        else:
            # Several statements (or a caller's transaction): they commit together.
            with transaction.atomic(using=connection.alias):
                for group in groups.values():
                    moved |= _finish_rows(kind, group, now, connection)
        for one in settled:
            if one.row.pk in moved:
                _announce(kind, one)
    else:
        with transaction.atomic(using=connection.alias):  # one commit for the batch
            for one in settled:
                if _write_orm(kind, one, now, connection):
                    moved.add(one.row.pk)
                    _announce(kind, one)
    statuses: list[str | None] = []
    for one in everything:
        if one.row.pk in moved:
            statuses.append(one.outcome.to)
        else:  # changed since the claim (an early signal) or the lease is lost
            statuses.append(
                _finish_locked(kind, one.row, one.call, worker=worker, now=now, fields=one.fields)
            )
    return statuses


def _finish_rows(
    kind: WorkKind[Any],
    group: list[_Settled],
    now: datetime,
    connection: BaseDatabaseWrapper,
) -> set[Any]:
    """One PostgreSQL statement for attempts of one shape: the rows' values as ``VALUES``,
    the guarded move of every row (``RETURNING`` those that moved), and an
    ``INSERT … SELECT`` for the attempt rows and events of the moved rows only. Returns the
    primary keys that moved."""
    model = kind.table.model
    meta = model._meta
    qn = connection.ops.quote_name
    first = group[0]
    to = first.outcome.to
    pk = qn(meta.pk.column)
    # The VALUES columns: v0 the primary key, then the guard, the changes, the inserts.
    fields: list[Any] = [meta.pk]
    guard_sql, set_sql = [], []
    for name in first.held:
        f = meta.get_field(name)
        guard_sql.append(f"t.{qn(f.column)} = v.v{len(fields)}")
        fields.append(f)
    for name in first.changes:
        f = meta.get_field(name)
        set_sql.append(f"{qn(f.column)} = v.v{len(fields)}")
        fields.append(f)
    inserts: list[tuple[str, list[str], list[str], list[Any]]] = []
    for instance in first.inserts:
        columns: list[str] = []
        exprs: list[str] = []
        insert_fields: list[Any] = []
        for f in instance._meta.concrete_fields:
            if getattr(f, "db_returning", False):  # an auto-incremented id
                continue
            columns.append(qn(f.column))
            if f.is_relation and f.related_model is model:
                exprs.append(f"m.{pk}")
            else:
                exprs.append(f"v.v{len(fields) + len(insert_fields)}")
                insert_fields.append(f)
        fields.extend(insert_fields)
        inserts.append((qn(instance._meta.db_table), columns, exprs, insert_fields))
    types = [f"%s::{f.db_type(connection)}" for f in fields]
    row_sql = f"({', '.join(types)})"
    params: list[Any] = []
    for one in group:
        values: list[Any] = [one.row.pk, *one.held.values(), *one.changes.values()]
        params.append(meta.pk.get_db_prep_value(values[0], connection))
        for f, value in zip(fields[1 : len(values)], values[1:], strict=True):
            params.append(f.get_db_prep_save(value, connection))
        for instance in one.inserts:
            for f in instance._meta.concrete_fields:
                if getattr(f, "db_returning", False) or (
                    f.is_relation and f.related_model is model
                ):
                    continue
                params.append(f.get_db_prep_save(f.pre_save(instance, True), connection))
    sources = kind.table.lifecycle.sources_for(to, kind.in_flight)
    names = ", ".join(f"v{i}" for i in range(len(fields)))
    ctes = [
        f"v ({names}) AS (VALUES {', '.join([row_sql] * len(group))})",
        f"m AS (UPDATE {qn(meta.db_table)} t SET {qn('status')} = %s, "  # noqa: S608
        f"{qn('updated_at')} = %s, {', '.join(set_sql)} FROM v WHERE t.{pk} = v.v0 "
        f"AND t.{qn('status')} IN ({', '.join(['%s'] * len(sources))}) "
        f"AND t.{qn('lease_expires_at')} IS NOT NULL AND {' AND '.join(guard_sql)} "
        f"RETURNING t.{pk})",
    ]
    params += [str(to), now, *sources]
    for i, (table, columns, exprs, _) in enumerate(inserts):
        ctes.append(
            f"i{i} AS (INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
            f"SELECT {', '.join(exprs)} FROM v JOIN m ON m.{pk} = v.v0)"
        )
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(ctes)} SELECT {pk} FROM m", params)  # noqa: S608
        return {row[0] for row in cursor.fetchall()}


def _finish_locked(
    kind: WorkKind[M],
    row: M,
    call: CallOutcome,
    *,
    worker: str,
    now: datetime,
    fields: dict[str, Any] | None = None,
) -> str | None:
    """:func:`finish` on the row as it is now, locked: after the one-statement finish matched
    nothing (an early signal came in meanwhile, or the lease was lost)."""
    number: int = row.attempt_count  # type: ignore[attr-defined]
    held = {"leased_by": worker, "attempt_count": number, "lease_expires_at__isnull": False}
    with transaction.atomic():  # the outcome and its attempt row commit together
        # Lock the row so nothing (an early signal, a sweep) slips in between reading and moving.
        current = (
            kind.table.objects()
            .select_for_update()
            .filter(status_in(kind.in_flight), pk=row.pk, **held)
            .first()
        )
        if current is None:
            logger.info("%s %s: attempt %s result discarded, lease lost", kind.name, row.pk, number)
            return None
        outcome = kind.decide(current, call, now)
        changes = {**kind.released(), **outcome.fields, **(fields or {})}
        moved = kind.table.move(
            row.pk, outcome.to, now=now, among=kind.in_flight, filters=held, **changes
        )
        if not moved:  # cannot happen under the row lock; kept as the guard of record
            return None
        started = now - timedelta(milliseconds=call.duration_ms)
        kind.record_attempt(
            current,
            AttemptRecord(number, started, call, call.error, outcome.attempt_outcome, worker),
        )
        kind.after_move(current, outcome.to, now)
        if outcome.countdown is not None:
            kind.publish_on_commit(row.pk, current, countdown=outcome.countdown)
    return outcome.to


# --------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------


def batches(step: Callable[[int], int], max_batches: int = 20) -> int:
    """Run ``step(batch_size)`` until a batch comes back short (bounded per sweep)."""
    size = app_settings.SWEEP_BATCH_SIZE
    total = 0
    for _ in range(max_batches):
        done = int(step(size))
        total += done
        if done < size:
            break
    return total


def sweep_querysets(kind: WorkKind[Any], now: datetime) -> dict[str, OutboundQuerySet[Any]]:
    """What each sweep of ``kind`` works on at ``now`` (``asyncqueue_recover --dry-run`` counts
    exactly these): leases to recover, lost messages to re-send, due rows never sent."""
    objects = kind.table.objects()
    return {
        "stale": objects.stale_leases(now),
        "lost": objects.lost_dispatches(now, timedelta(seconds=app_settings.DISPATCH_GRACE)),
        "due": objects.never_dispatched(now),
    }


def _dispatch_batch(
    kind: WorkKind[Any], qs: OutboundQuerySet[Any], now: datetime, size: int
) -> int:
    with transaction.atomic():  # the row locks (SKIP LOCKED) hold until the commit
        rows = list(qs.lock_batch(size).values_list("pk", *kind.message_fields))
        if not rows:
            return 0
        kind.table.touch([r[0] for r in rows], "dispatch", dispatched_at=now)
        if kind.wakes:
            # One wake-up per queue and priority, highest first: its batch claims up to
            # BATCH_SIZE rows and passes the wake-up on while batches come back full.
            targets = sorted({kind.wake_target(*r[1:]) for r in rows}, key=lambda t: -t[1])
            publish_on_commit([kind.wake_message(queue, priority) for queue, priority in targets])
        else:
            publish_on_commit([kind.message(str(r[0]), *r[1:]) for r in rows])
    return len(rows)


def dispatch(kind: WorkKind[Any], qs: OutboundQuerySet[Any], now: datetime) -> int:
    """Dispatch the rows of ``qs`` in locked batches: mark them sent and, once committed, wake
    their queues (one wake-up per queue and priority; a kind without wake-ups gets a message
    per row). Returns how many rows."""
    return batches(lambda size: _dispatch_batch(kind, qs, now, size))


def _recover_batch(kind: WorkKind[M], now: datetime, size: int) -> int:
    recovered = 0
    with transaction.atomic():  # row locks (SKIP LOCKED) so parallel sweeps split the work
        for row in kind.table.objects().stale_leases(now).lock_batch(size):
            outcome = kind.decide_lost(row, now)
            number: int = row.attempt_count  # type: ignore[attr-defined]
            moved = kind.table.move(
                row.pk,
                outcome.to,
                now=now,
                among=kind.in_flight,
                filters={"attempt_count": number, "lease_expires_at__lt": now},
                **{**kind.released(), **outcome.fields},
            )
            if not moved:
                continue
            recovered += 1
            started = row.claimed_at or now  # type: ignore[attr-defined]
            worker = row.leased_by  # type: ignore[attr-defined]
            kind.record_attempt(
                row,
                AttemptRecord(number, started, None, WORKER_LOST, outcome.attempt_outcome, worker),
            )
            kind.after_move(row, outcome.to, now)
            if outcome.countdown is not None:
                kind.publish_on_commit(row.pk, row, countdown=outcome.countdown)
    return recovered


def recover(kind: WorkKind[Any], now: datetime) -> int:
    """Rows whose worker died (lease expired) → retried or given up by the kind's normal
    rules, the lost attempt recorded as "worker lost". Returns how many."""
    return batches(lambda size: _recover_batch(kind, now, size))
