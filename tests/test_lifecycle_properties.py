"""Property test of the lifecycle through the real write path: random sequences of everything
that can happen to a task (claims, callback outcomes, signals early and late, heartbeats,
expiry sweeps, dead workers, cancels, retries, the clock moving) never change a terminal task
except by an explicit retry, and produce exactly one terminal event per terminal transition."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from asyncqueue_django import services
from asyncqueue_django.exceptions import ServiceError
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import Task, WebhookDelivery
from asyncqueue_django.services import TaskSpec
from asyncqueue_django.states import TERMINAL, TaskStatus, can_transition

OUTCOMES = {
    "2xx": CallResult(status_code=200, duration_ms=1),
    "503": CallResult(status_code=503, duration_ms=1),
    "404": CallResult(status_code=404, duration_ms=1),
    "refused": CallResult(error="connection refused", error_kind="connection"),
}


class TaskLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.savepoint = transaction.atomic()
        self.savepoint.__enter__()
        self.now = timezone.now()
        self.team = services.get_or_create_team("prop")[0]
        created = services.create_task(
            self.team,
            TaskSpec(
                target_url="http://127.0.0.1:9/",
                wait_for_signal=True,
                max_wait_time=60,
                max_retries=2,
                queue="unconsumed",
                on_complete_url="http://127.0.0.1:9/hook",
            ),
            now=self.now,
        )
        self.task_id = created.task.pk
        self.token = created.signal_token or ""
        self.status = created.task.status
        self.terminal_entries = 0
        self.retried = False

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.savepoint.__exit__(None, None, None)

    def _task(self) -> Task:
        return Task.objects.get(pk=self.task_id)

    def _after(self, *, explicit_retry: bool = False) -> None:
        new = self._task().status
        old = self.status
        if old != new:
            assert can_transition(old, new), f"{old} -> {new} is not in the lifecycle"
            if old in TERMINAL:
                assert explicit_retry, f"terminal {old} changed to {new}"
            if new in TERMINAL:
                self.terminal_entries += 1
        self.status = new

    @rule(seconds=st.sampled_from([0.5, 5, 30, 61, 3600]))
    def clock_moves(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def worker_claims(self) -> None:
        services.claim_task(self.task_id, "w", now=self.now)
        self._after()

    @rule(outcome=st.sampled_from(sorted(OUTCOMES)))
    def callback_returns(self, outcome: str) -> None:
        task = self._task()
        if task.status == TaskStatus.PROCESSING:
            services.finish_attempt(task, OUTCOMES[outcome], worker="w", now=self.now)
        self._after()

    @rule(status=st.sampled_from(["completed", "failed"]), n=st.integers(0, 2))
    def signal_arrives(self, status: str, n: int) -> None:
        with contextlib.suppress(ServiceError):
            services.signal_task(self.token, status, result={"n": n}, now=self.now)
        self._after()

    @rule(extend=st.sampled_from([1, 30, 600]))
    def heartbeat(self, extend: int) -> None:
        with contextlib.suppress(ServiceError):
            services.heartbeat(self.token, extend, now=self.now)
        self._after()

    @rule()
    def expiry_sweep(self) -> None:
        services.expire_overdue(now=self.now)
        self._after()

    @rule()
    def recovery_sweep(self) -> None:
        services.recover_stale_leases(now=self.now)
        self._after()

    @rule()
    def client_cancels(self) -> None:
        with contextlib.suppress(ServiceError):
            services.cancel_task(self.team, self.task_id, now=self.now)
        self._after()

    @rule()
    def operator_retries(self) -> None:
        with contextlib.suppress(ServiceError):
            services.retry_task(self.team, self.task_id, now=self.now)
        self._after(explicit_retry=True)

    @invariant()
    def one_event_per_terminal_transition(self) -> None:
        events = WebhookDelivery.objects.filter(task_id=self.task_id).count()
        assert events == self.terminal_entries

    @invariant()
    def attempts_are_numbered_without_gaps(self) -> None:
        numbers = list(
            Task.objects.get(pk=self.task_id)
            .attempts.order_by("number")
            .values_list("number", flat=True)
        )
        assert numbers == list(range(1, len(numbers) + 1))


def test_random_histories_keep_the_lifecycle(db: Any) -> None:
    run_state_machine_as_test(
        TaskLifecycle,
        settings=settings(
            max_examples=60,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
