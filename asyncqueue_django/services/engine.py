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

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from django.db import models, transaction
from django.db.models import F

from asyncqueue_django.conf import app_settings
from asyncqueue_django.jsonvalue import storable_headers, storable_text
from asyncqueue_django.querysets import OutboundQuerySet, status_in
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

    def message(self, pk: Any, *values: Any, countdown: float = 0) -> Message:
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
        raise NotImplementedError

    def after_move(self, row: M, to: str, now: datetime) -> None:
        """Inside the transaction of a settled attempt (e.g. a task's terminal event)."""

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
        values = tuple(getattr(row, f) for f in self.message_fields) if row is not None else ()
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


def claim(kind: WorkKind[M], pk: Any, worker: str, now: datetime) -> M | None:
    """A due, claimable row → leased to ``worker`` for one attempt; None if not claimable.

    None is the normal answer to a duplicate or late message: someone else claimed the row,
    it is done, cancelled, in flight elsewhere, or not due yet.
    """
    # With its related rows (the team signs the request). No ORDER BY for one row.
    row = kind.table.objects().select_related(*kind.related).filter(pk=pk).order_by().first()
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
    # stale and someone else's claim won. The due time tolerates a little clock skew.
    filters = {
        "next_attempt_at__lte": now + CLOCK_SKEW,
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
    """
    number: int = row.attempt_count  # type: ignore[attr-defined]
    call = storable_call(call)
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
        publish_on_commit([kind.message(str(r[0]), *r[1:]) for r in rows])
    return len(rows)


def dispatch(kind: WorkKind[Any], qs: OutboundQuerySet[Any], now: datetime) -> int:
    """Send the messages of the rows of ``qs`` in locked batches; returns how many."""
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
