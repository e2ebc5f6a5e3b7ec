"""The lifecycle table (``states.py``) against the README's diagram, written out independently."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from asyncqueue_django import states
from asyncqueue_django.states import TaskStatus

PENDING, DELAYED, PROCESSING, WAITING = "pending", "delayed", "processing", "waiting"
POLLING = "polling"
COMPLETED, FAILED, TIMEOUT, CANCELLED = "completed", "failed", "timeout", "cancelled"

ALL = [PENDING, DELAYED, PROCESSING, WAITING, POLLING, COMPLETED, FAILED, TIMEOUT, CANCELLED]

# The lifecycle, edge by edge:
#   create ─▶ pending ◀─▶ delayed; pending/delayed ─cancel─▶ cancelled
#   pending ─▶ processing; a due delayed task is claimed directly (delayed is "pending, not yet
#   due", RUNNABLE in both cases)
#   processing ─retryable failure, retries left─▶ delayed; ─success─▶ completed | waiting;
#   ─fatal / exhausted─▶ failed
#   waiting ─signal─▶ completed | failed; ─maxWaitTime─▶ timeout; ─cancel─▶ cancelled
#   processing ─success, the task polls a provider─▶ polling; polling ─still running─▶ polling;
#   polling ─done / failed / signal / callback─▶ completed | failed; ─maxDuration─▶ timeout;
#   ─cancel─▶ cancelled
#   failed | timeout ─explicit retry─▶ pending (a new cycle); completed, cancelled: never again
ALLOWED = {
    (PENDING, PROCESSING),
    (PENDING, DELAYED),
    (PENDING, CANCELLED),
    (DELAYED, PENDING),
    (DELAYED, PROCESSING),
    (DELAYED, CANCELLED),
    (PROCESSING, DELAYED),
    (PROCESSING, COMPLETED),
    (PROCESSING, WAITING),
    (PROCESSING, FAILED),
    (WAITING, COMPLETED),
    (WAITING, FAILED),
    (WAITING, TIMEOUT),
    (WAITING, CANCELLED),
    (PROCESSING, POLLING),
    (POLLING, POLLING),
    (POLLING, COMPLETED),
    (POLLING, FAILED),
    (POLLING, TIMEOUT),
    (POLLING, CANCELLED),
    (FAILED, PENDING),
    (TIMEOUT, PENDING),
}


def test_statuses_are_exactly_the_spec_ones() -> None:
    assert [s.value for s in TaskStatus] == ALL
    assert set(states.TRANSITIONS) == set(TaskStatus)


@pytest.mark.parametrize(("source", "target"), list(itertools.product(ALL, ALL)))
def test_every_pair_of_the_transition_table(source: str, target: str) -> None:
    expected = (source, target) in ALLOWED
    assert states.can_transition(source, target) is expected
    assert (TaskStatus(target) in states.TRANSITIONS[TaskStatus(source)]) is expected


def test_no_status_moves_to_itself_but_polling() -> None:
    """Only a poll that found the job still running keeps its status (the next poll)."""
    assert [s for s in ALL if states.can_transition(s, s)] == [POLLING]


def test_terminal_statuses() -> None:
    assert {COMPLETED, FAILED, TIMEOUT, CANCELLED} == states.TERMINAL
    assert [s for s in ALL if states.is_terminal(s)] == [COMPLETED, FAILED, TIMEOUT, CANCELLED]


@pytest.mark.parametrize("source", [COMPLETED, FAILED, TIMEOUT, CANCELLED])
def test_terminal_only_leaves_through_retry(source: str) -> None:
    reachable = {t for t in ALL if states.can_transition(source, t)}
    assert reachable == ({PENDING} if source in (FAILED, TIMEOUT) else set())


def test_named_subsets() -> None:
    assert {PENDING, DELAYED} == states.RUNNABLE
    assert {PENDING, DELAYED, WAITING, POLLING} == states.CANCELLABLE
    assert {WAITING, POLLING} == states.RESOLVABLE
    assert {POLLING} == states.POLL_OPEN
    assert {FAILED, TIMEOUT} == states.RETRYABLE
    assert {PENDING, DELAYED, PROCESSING} == states.EARLY_SIGNAL
    assert states.EVENT_NAMES == {
        COMPLETED: "task.completed",
        FAILED: "task.failed",
        TIMEOUT: "task.timeout",
        CANCELLED: "task.cancelled",
    }


@pytest.mark.parametrize("target", ALL)
def test_sources_for_every_target(target: str) -> None:
    expected = sorted(s for s, t in ALLOWED if t == target)
    assert states.sources_for(target) == expected


def test_sources_for_known_values() -> None:
    assert states.sources_for(CANCELLED) == [DELAYED, PENDING, POLLING, WAITING]
    assert states.sources_for(PENDING) == [DELAYED, FAILED, TIMEOUT]
    assert states.sources_for(PROCESSING) == [DELAYED, PENDING]
    assert states.sources_for(TIMEOUT) == [POLLING, WAITING]


def test_sources_for_restricted_to_among() -> None:
    assert states.sources_for(PENDING, among=states.RETRYABLE) == [FAILED, TIMEOUT]
    assert states.sources_for(CANCELLED, among=states.CANCELLABLE) == [
        DELAYED,
        PENDING,
        POLLING,
        WAITING,
    ]
    assert states.sources_for(PROCESSING, among=states.RUNNABLE) == [DELAYED, PENDING]
    assert states.sources_for(COMPLETED, among=frozenset({TaskStatus.WAITING})) == [WAITING]


def test_sources_for_an_impossible_transition_raises() -> None:
    with pytest.raises(ValueError, match="no status can move to 'timeout'"):
        states.sources_for(TIMEOUT, among=states.RUNNABLE)
    with pytest.raises(ValueError, match="no status can move to 'pending'"):
        states.sources_for(PENDING, among=frozenset({TaskStatus.COMPLETED}))


def test_sources_for_an_unknown_status_raises() -> None:
    with pytest.raises(ValueError, match="bogus"):
        states.sources_for("bogus")


@pytest.mark.parametrize(("source", "target"), [("bogus", PENDING), (PENDING, "bogus"), ("", "")])
def test_can_transition_with_unknown_status_is_false(source: str, target: str) -> None:
    assert states.can_transition(source, target) is False


def test_module_is_pure() -> None:
    """``states.py`` imports no models, DRF or Celery (STYLE convention 5)."""
    code = (
        "import sys; import asyncqueue_django.states; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rest_framework', 'celery') "
        "or m == 'asyncqueue_django.models'); print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# The webhook delivery lifecycle: pending until delivered, given up or refused (410); a retry
# keeps it pending; an operator's re-send takes any status back to pending.
D_PENDING, DELIVERED, D_FAILED, GONE = "pending", "delivered", "failed", "gone"
DELIVERY_ALLOWED = {
    (D_PENDING, D_PENDING),
    (D_PENDING, DELIVERED),
    (D_PENDING, D_FAILED),
    (D_PENDING, GONE),
    (DELIVERED, D_PENDING),
    (D_FAILED, D_PENDING),
    (GONE, D_PENDING),
}
DELIVERY_ALL = [D_PENDING, DELIVERED, D_FAILED, GONE]


@pytest.mark.parametrize(("source", "target"), list(itertools.product(DELIVERY_ALL, DELIVERY_ALL)))
def test_every_pair_of_the_delivery_table(source: str, target: str) -> None:
    assert states.DELIVERY.can_transition(source, target) is ((source, target) in DELIVERY_ALLOWED)


def test_delivery_statuses_and_writes_in_place() -> None:
    assert [s.value for s in states.DeliveryStatus] == DELIVERY_ALL
    assert set(states.DELIVERY_TRANSITIONS) == set(states.DeliveryStatus)
    assert states.DELIVERY.terminal == {DELIVERED, D_FAILED, GONE}
    assert states.DELIVERY.guard("claim") == [D_PENDING]
    assert states.DELIVERY.guard("dispatch") == [D_PENDING]
    assert states.DELIVERY.sources_for(D_PENDING) == sorted(DELIVERY_ALL)


def test_task_writes_in_place_name_their_statuses() -> None:
    assert states.TASK.guard("dispatch") == [DELAYED, PENDING, POLLING]
    assert states.TASK.guard("record_early_signal") == [DELAYED, PENDING, PROCESSING]
    assert states.TASK.guard("extend_wait") == [WAITING]
    # A provider poll is claimed in place: the task stays polling under a lease.
    assert states.TASK.guard("claim") == [POLLING]
    with pytest.raises(ValueError, match="no in-place write 'lease'"):
        states.TASK.guard("lease")
