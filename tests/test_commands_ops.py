"""Operator commands: create_team, revoke_api_key, expire, recover, signal, stats, prune."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from asyncqueue_django import services
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import ApiKey, Attempt, Task, Team
from asyncqueue_django.services import TaskSpec

pytestmark = pytest.mark.django_db

COMMANDS = [
    "asyncqueue_create_team",
    "asyncqueue_revoke_api_key",
    "asyncqueue_expire",
    "asyncqueue_recover",
    "asyncqueue_signal",
    "asyncqueue_stats",
    "asyncqueue_prune",
]


def run(name: str, *args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    assert err.getvalue() == ""
    return out.getvalue()


def fails(name: str, *args: str) -> str:
    with pytest.raises(CommandError) as excinfo:
        run(name, *args)
    return str(excinfo.value)


# --------------------------------------------------------------------------- task factories


def make(team: Team, **spec: Any) -> Task:
    spec.setdefault("target_url", "http://127.0.0.1:9/x")
    return services.create_task(team, TaskSpec(**spec)).task


def claimed(team: Team, now: datetime | None = None, **spec: Any) -> Task:
    task = services.claim_task(make(team, **spec).pk, "w", now=now)
    assert task is not None
    return task


def finished(team: Team, status_code: int = 200, duration_ms: int = 5, **spec: Any) -> Task:
    task = claimed(team, **spec)
    call = CallResult(status_code=status_code, duration_ms=duration_ms)
    services.finish_attempt(task, call, worker="w")
    task.refresh_from_db()
    return task


def waiting(team: Team) -> tuple[Task, str]:
    created = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/x", wait_for_signal=True)
    )
    task = services.claim_task(created.task.pk, "w")
    assert task is not None
    services.finish_attempt(task, CallResult(status_code=200, duration_ms=1), worker="w")
    task.refresh_from_db()
    assert task.status == "waiting"
    assert created.signal_token is not None
    return task, created.signal_token


def status_of(task: Task) -> str:
    return Task.objects.values_list("status", flat=True).get(pk=task.pk)


# --------------------------------------------------------------------------- all commands


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_the_namespace(name: str) -> None:
    command = load_command_class("asyncqueue_django", name)
    assert name.startswith("asyncqueue_")
    assert len(command.help) > 40
    parser = command.create_parser("manage.py", name)
    assert command.help.split()[0] in parser.format_help()


@pytest.mark.parametrize("name", COMMANDS)
def test_unknown_options_are_command_errors(name: str) -> None:
    message = fails(name, "--no-such-option")
    assert "unrecognized arguments: --no-such-option" in message or "required" in message


# --------------------------------------------------------------------------- create_team


def test_create_team() -> None:
    out = run("asyncqueue_create_team", "Acme Corp")
    team = Team.objects.get()
    assert team.name == "Acme Corp"
    assert team.webhook_secret.startswith("whsec_")
    assert out == f"Created team 'Acme Corp' (id {team.pk}).\n"
    assert team.webhook_secret not in out


def test_create_team_trims_the_name() -> None:
    run("asyncqueue_create_team", "  acme  ")
    assert list(Team.objects.values_list("name", flat=True)) == ["acme"]


def test_existing_team_is_an_error_unless_if_missing(team: Team) -> None:
    secret = team.webhook_secret
    message = fails("asyncqueue_create_team", "acme")
    assert message == (
        f"Team 'acme' already exists (id {team.pk}). Use --if-missing to accept that."
    )
    out = run("asyncqueue_create_team", "acme", "--if-missing")
    assert out == f"Team 'acme' already exists (id {team.pk}); nothing changed.\n"
    assert Team.objects.count() == 1
    assert Team.objects.get().webhook_secret == secret


def test_if_missing_still_creates_a_missing_team() -> None:
    assert run("asyncqueue_create_team", "new", "--if-missing").startswith("Created team 'new'")
    assert Team.objects.filter(name="new").exists()


@pytest.mark.parametrize("name", ["", "   ", "t" * 101])
def test_create_team_bad_names(name: str) -> None:
    assert fails("asyncqueue_create_team", name) == "NAME must be 1-100 characters."
    assert Team.objects.count() == 0


def test_create_team_needs_a_name() -> None:
    assert "the following arguments are required: name" in fails("asyncqueue_create_team")


def test_create_team_name_of_100_characters_is_fine() -> None:
    run("asyncqueue_create_team", "t" * 100)
    assert Team.objects.get().name == "t" * 100


# --------------------------------------------------------------------------- revoke_api_key


def authenticates(raw: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client.get("/v1/tasks").status_code == 200


def test_revoke_by_prefix(team: Team) -> None:
    issued = services.create_api_key(team, "billing")
    assert authenticates(issued.raw_key)
    key = issued.api_key
    out = run("asyncqueue_revoke_api_key", key.prefix)
    assert out == f"Revoked API key {key.prefix}… 'billing' (id {key.pk}, team 'acme').\n"
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert not authenticates(issued.raw_key)
    assert issued.raw_key not in out


def test_revoke_by_id_and_by_the_displayed_form(team: Team) -> None:
    first = services.create_api_key(team).api_key
    second = services.create_api_key(team).api_key
    run("asyncqueue_revoke_api_key", str(first.pk))
    run("asyncqueue_revoke_api_key", f"{second.prefix}…")
    assert ApiKey.objects.active().count() == 0


def test_revoke_dry_run_changes_nothing(team: Team) -> None:
    issued = services.create_api_key(team)
    key = issued.api_key
    out = run("asyncqueue_revoke_api_key", key.prefix, "--dry-run")
    assert out == f"Would revoke API key {key.prefix}… (id {key.pk}, team 'acme') (dry run).\n"
    assert authenticates(issued.raw_key)


def test_revoking_twice_is_not_an_error(team: Team) -> None:
    key = services.create_api_key(team).api_key
    run("asyncqueue_revoke_api_key", key.prefix)
    revoked_at = ApiKey.objects.get().revoked_at
    out = run("asyncqueue_revoke_api_key", key.prefix)
    assert "was already revoked at" in out
    assert out.endswith("nothing changed.\n")
    assert ApiKey.objects.get().revoked_at == revoked_at


def test_revoke_unknown_key(team: Team) -> None:
    services.create_api_key(team)
    assert fails("asyncqueue_revoke_api_key", "aq_nothere") == (
        "No API key has the prefix or id 'aq_nothere'."
    )
    assert fails("asyncqueue_revoke_api_key", "999999") == (
        "No API key has the prefix or id '999999'."
    )
    assert ApiKey.objects.active().count() == 1


@pytest.mark.parametrize("ref", ["", "  ", "…"])
def test_revoke_empty_reference(ref: str) -> None:
    assert fails("asyncqueue_revoke_api_key", ref) == "PREFIX_OR_ID must not be empty."


def test_revoke_ambiguous_prefix_names_the_candidates(team: Team) -> None:
    one = services.create_api_key(team).api_key
    two = services.create_api_key(team).api_key
    ApiKey.objects.filter(pk=two.pk).update(prefix=one.prefix)
    message = fails("asyncqueue_revoke_api_key", one.prefix)
    assert message.startswith(f"'{one.prefix}' matches 2 active API keys (")
    assert f"id {one.pk}" in message
    assert f"id {two.pk}" in message
    assert message.endswith("revoke one by its id.")
    assert ApiKey.objects.active().count() == 2
    # Once one of them is revoked, the prefix names the other one only.
    run("asyncqueue_revoke_api_key", str(two.pk))
    run("asyncqueue_revoke_api_key", one.prefix)
    assert ApiKey.objects.active().count() == 0


def test_revoke_needs_an_argument() -> None:
    assert "the following arguments are required: PREFIX_OR_ID" in fails(
        "asyncqueue_revoke_api_key"
    )


# --------------------------------------------------------------------------- expire


def test_expire_times_out_overdue_waits(team: Team) -> None:
    overdue, _ = waiting(team)
    current, _ = waiting(team)
    Task.objects.filter(pk=overdue.pk).update(wait_deadline=timezone.now() - timedelta(seconds=1))
    assert run("asyncqueue_expire") == "Timed out 1 overdue waiting task(s).\n"
    assert status_of(overdue) == "timeout"
    assert status_of(current) == "waiting"
    assert run("asyncqueue_expire") == "Timed out 0 overdue waiting task(s).\n"


def test_expire_dry_run(team: Team) -> None:
    overdue, _ = waiting(team)
    Task.objects.filter(pk=overdue.pk).update(wait_deadline=timezone.now() - timedelta(seconds=1))
    assert run("asyncqueue_expire", "--dry-run") == (
        "Would time out 1 overdue waiting task(s) (dry run).\n"
    )
    assert status_of(overdue) == "waiting"


def test_expire_says_when_overdue_tasks_remain(team: Team) -> None:
    tasks = [waiting(team)[0] for _ in range(3)]
    Task.objects.filter(pk__in=[t.pk for t in tasks]).update(
        wait_deadline=timezone.now() - timedelta(seconds=1)
    )
    # One sweep handles at most 20 batches; with batches of 1 row, 3 rows fit.
    with override_settings(ASYNCQUEUE={"SWEEP_BATCH_SIZE": 1}):
        assert run("asyncqueue_expire") == "Timed out 3 overdue waiting task(s).\n"
    assert Task.objects.filter(status="timeout").count() == 3


def test_expire_takes_no_arguments() -> None:
    assert "unrecognized arguments: now" in fails("asyncqueue_expire", "now")


# --------------------------------------------------------------------------- recover


def test_recover_runs_all_three_sweeps(team: Team) -> None:
    now = timezone.now()
    stale = claimed(team)
    Task.objects.filter(pk=stale.pk).update(lease_expires_at=now - timedelta(seconds=1))
    lost = make(team)
    Task.objects.filter(pk=lost.pk).update(
        next_attempt_at=now - timedelta(hours=1), dispatched_at=now - timedelta(hours=1)
    )
    due = make(team, delay_until=now + timedelta(hours=1))
    assert due.dispatched_at is None
    Task.objects.filter(pk=due.pk).update(next_attempt_at=now - timedelta(seconds=1))
    fresh = make(team)

    dry = run("asyncqueue_recover", "--dry-run")
    assert dry == (
        "Dry run; nothing changed. Would handle:\n"
        "  stale leases recovered: 1\n"
        "  lost dispatches re-sent: 1\n"
        "  due tasks dispatched:    1\n"
        "  webhook leases recovered: 0\n"
        "  webhook messages re-sent: 0\n"
        "  due webhooks dispatched:  0\n"
    )
    assert status_of(stale) == "processing"

    out = run("asyncqueue_recover")
    assert out == (
        "  stale leases recovered: 1\n  lost dispatches re-sent: 1\n  due tasks dispatched:    1\n"
        "  webhook leases recovered: 0\n"
        "  webhook messages re-sent: 0\n"
        "  due webhooks dispatched:  0\n"
    )
    assert status_of(stale) == "delayed"
    assert Attempt.objects.get(task=stale).outcome == "worker_lost"
    for task in (lost, due):
        assert Task.objects.get(pk=task.pk).dispatched_at >= now
    assert Task.objects.get(pk=fresh.pk).dispatched_at == fresh.dispatched_at
    assert [line.split()[-1] for line in run("asyncqueue_recover").splitlines()] == ["0"] * 6


def test_recover_resends_a_never_sent_task_past_the_grace_as_lost(team: Team) -> None:
    now = timezone.now()
    due = make(team, delay_until=now + timedelta(hours=1))
    Task.objects.filter(pk=due.pk).update(next_attempt_at=now - timedelta(hours=1))
    out = run("asyncqueue_recover")
    assert "lost dispatches re-sent: 1" in out
    assert "due tasks dispatched:    0" in out
    assert Task.objects.get(pk=due.pk).dispatched_at is not None


def test_recover_on_an_empty_database() -> None:
    assert run("asyncqueue_recover") == (
        "  stale leases recovered: 0\n  lost dispatches re-sent: 0\n  due tasks dispatched:    0\n"
        "  webhook leases recovered: 0\n"
        "  webhook messages re-sent: 0\n"
        "  due webhooks dispatched:  0\n"
    )


# --------------------------------------------------------------------------- signal


def test_signal_completes_a_waiting_task(team: Team) -> None:
    task, token = waiting(team)
    out = run("asyncqueue_signal", token, "--status", "completed", "--result", '{"ok": true}')
    assert out == f"Task {task.pk} is now completed.\n"
    task.refresh_from_db()
    assert (task.status, task.result, task.error) == ("completed", {"ok": True}, "")


def test_signal_fails_a_waiting_task(team: Team) -> None:
    task, token = waiting(team)
    run("asyncqueue_signal", token, "--status", "failed", "--error", "card declined")
    task.refresh_from_db()
    assert (task.status, task.result, task.error) == ("failed", None, "card declined")


def test_signal_reads_the_token_from_stdin(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    task, token = waiting(team)
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    run("asyncqueue_signal", "-", "--status", "completed")
    assert status_of(task) == "completed"


def test_early_signal_is_recorded(team: Team) -> None:
    created = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/x", wait_for_signal=True)
    )
    assert created.signal_token is not None
    out = run("asyncqueue_signal", created.signal_token, "--status", "completed")
    assert out == (
        f"Signal recorded for task {created.task.pk} (pending); it is applied when the "
        "callback succeeds.\n"
    )
    task = Task.objects.get(pk=created.task.pk)
    assert (task.status, task.early_signal_status) == ("pending", "completed")
    message = fails("asyncqueue_signal", created.signal_token, "--status", "failed")
    assert message == "A different signal was already recorded for this task."


def test_signal_to_a_finished_task_names_its_status(team: Team) -> None:
    _, token = waiting(team)
    run("asyncqueue_signal", token, "--status", "completed")
    message = fails("asyncqueue_signal", token, "--status", "failed")
    assert message == "Cannot signal this task: it has completed."


def test_signal_after_the_deadline_names_timeout(team: Team) -> None:
    task, token = waiting(team)
    Task.objects.filter(pk=task.pk).update(wait_deadline=timezone.now() - timedelta(seconds=1))
    assert fails("asyncqueue_signal", token, "--status", "completed") == (
        "Cannot signal this task: it has timed out."
    )
    assert status_of(task) == "timeout"


@pytest.mark.parametrize("token", ["0" * 64, "not-a-token", "A" * 64])
def test_signal_unknown_token(token: str) -> None:
    assert fails("asyncqueue_signal", token, "--status", "completed") == "Unknown signal token."


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ("{", "--result is not valid JSON: Expecting property name enclosed in double quotes"),
        ("", "--result is not valid JSON: Expecting value"),
        ("NaN", "--result is not valid JSON: NaN is not allowed."),
        ('"a\\u0000b"', "--result is not valid JSON: JSON strings must not contain NUL"),
        ("[" * 100 + "]" * 100, "--result is not valid JSON: JSON is nested deeper than 64"),
    ],
    ids=["truncated", "empty", "nan", "nul", "deep"],
)
def test_signal_bad_result(team: Team, result: str, message: str) -> None:
    task, token = waiting(team)
    assert fails(
        "asyncqueue_signal", token, "--status", "completed", "--result", result
    ).startswith(message)
    assert status_of(task) == "waiting"


def test_signal_result_size_is_capped(team: Team) -> None:
    task, token = waiting(team)
    with override_settings(ASYNCQUEUE={"MAX_BODY_BYTES": 10}):
        big = json.dumps("x" * 20)
        message = fails("asyncqueue_signal", token, "--status", "completed", "--result", big)
        assert message == "--result must be at most 10 bytes."
        run("asyncqueue_signal", token, "--status", "completed", "--result", json.dumps("x" * 8))
    assert status_of(task) == "completed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "completed"], "the following arguments are required: TOKEN"),
        (["t" * 64], "the following arguments are required: --status"),
        (["t" * 64, "--status", "done"], "argument --status: invalid choice: 'done'"),
        (["  ", "--status", "failed"], "TOKEN must not be empty."),
        (["t" * 64, "--status", "failed", "--error", "e" * 10_001], "--error must be at most"),
        (["t" * 64, "--status", "failed", "--error", "a\x00b"], "--error must not contain NUL"),
    ],
    ids=["no-token", "no-status", "bad-status", "blank-token", "long-error", "nul-error"],
)
def test_signal_bad_arguments(args: list[str], message: str) -> None:
    assert message in fails("asyncqueue_signal", *args)


# --------------------------------------------------------------------------- stats


def stats(*args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(run("asyncqueue_stats", "--json", *args))
    return result


def test_stats_on_an_empty_database() -> None:
    data = stats()
    assert data["tasks"] == 0
    assert set(data["byStatus"].values()) == {0}
    assert data["byQueue"] == {}
    assert data["callbackDurationMs"] == {"count": 0, "p50": None, "p95": None}
    assert data["timeToStartSeconds"] == {"count": 0, "p50": None, "p95": None}
    out = run("asyncqueue_stats")
    assert "  (no tasks)" in out
    assert "  p50               -" in out


def test_stats_counts_by_status_and_queue(team: Team) -> None:
    make(team)
    make(team, queue="high")
    make(team, queue="high", delay_until=timezone.now() + timedelta(hours=1))
    finished(team, queue="low")
    finished(team, status_code=400)
    data = stats()
    assert data["tasks"] == 5
    assert data["team"] is None
    assert data["byStatus"] == {
        "pending": 2,
        "delayed": 1,
        "processing": 0,
        "waiting": 0,
        "polling": 0,
        "completed": 1,
        "failed": 1,
        "timeout": 0,
        "cancelled": 0,
    }
    assert data["byQueue"] == {"default": 2, "high": 2, "low": 1}
    assert list(data["byQueue"]) == ["default", "high", "low"]  # largest first, then by name


def test_stats_percentiles_use_the_nearest_rank(team: Team) -> None:
    for duration in [70, 10, 200, 20, 30, 40, 50, 60, 80, 90, 100, 110, 120, 130, 140, 150]:
        finished(team, duration_ms=duration)
    for duration in [160, 170, 180, 190]:
        finished(team, duration_ms=duration)
    data = stats()
    # 20 attempts, 10..200 ms: rank ceil(0.5*20)=10 → 100 ms, rank ceil(0.95*20)=19 → 190 ms.
    assert data["callbackDurationMs"] == {"count": 20, "p50": 100, "p95": 190}


def test_stats_time_to_start(team: Team) -> None:
    for seconds in [3, 1, 2, 4, 5, 6, 7, 8, 9, 10.25]:
        task = make(team)
        services.claim_task(task.pk, "w", now=task.created_at + timedelta(seconds=seconds))
    make(team)  # not started: not counted
    data = stats()
    assert data["timeToStartSeconds"] == {"count": 10, "p50": 5.0, "p95": 10.25}
    out = run("asyncqueue_stats")
    assert "Time to start (10 started tasks):" in out


def test_stats_window(team: Team) -> None:
    old = finished(team, duration_ms=999)
    Task.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=30))
    Attempt.objects.filter(task=old).update(started_at=timezone.now() - timedelta(hours=30))
    finished(team, duration_ms=7)
    recent = stats()
    assert recent["tasks"] == 1
    assert recent["callbackDurationMs"] == {"count": 1, "p50": 7, "p95": 7}
    wide = stats("--since", "48")
    assert wide["tasks"] == 2
    assert wide["callbackDurationMs"]["p95"] == 999
    narrow = stats("--since", "0.5")
    assert narrow["tasks"] == 1


def test_stats_for_one_team(team: Team) -> None:
    other = services.get_or_create_team("other")[0]
    finished(team, duration_ms=10)
    finished(other, duration_ms=500)
    make(other, queue="other")
    data = stats("--team", "acme")
    assert data["team"] == "acme"
    assert data["tasks"] == 1
    assert data["byQueue"] == {"default": 1}
    assert data["callbackDurationMs"] == {"count": 1, "p50": 10, "p95": 10}
    out = run("asyncqueue_stats", "--team", "other", "--since", "2")
    assert out.startswith("Window: last 2 h (since ")
    assert "team 'other'" in out.splitlines()[0]
    assert "Tasks created: 2" in out
    assert "  p95          500 ms" in out


def test_stats_table_lists_every_status(team: Team) -> None:
    make(team)
    out = run("asyncqueue_stats")
    for status in ["pending", "delayed", "processing", "waiting", "completed", "failed"]:
        assert f"\n  {status:<12} " in out
    assert "all teams" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "0"], "--since must be more than 0 and at most 87840 hours."),
        (["--since", "-1"], "--since must be more than 0 and at most 87840 hours."),
        (["--since", "nan"], "--since must be more than 0 and at most 87840 hours."),
        (["--since", "inf"], "--since must be more than 0 and at most 87840 hours."),
        (["--since", "100000"], "--since must be more than 0 and at most 87840 hours."),
        (["--since", "day"], "argument --since: invalid float value: 'day'"),
        (["--team", "nobody"], "No team is called 'nobody'."),
    ],
    ids=["zero", "negative", "nan", "inf", "too-long", "not-a-number", "unknown-team"],
)
def test_stats_bad_arguments(args: list[str], message: str) -> None:
    assert message in fails("asyncqueue_stats", *args)


# --------------------------------------------------------------------------- prune


def age(task: Task, days: float) -> None:
    Task.objects.filter(pk=task.pk).update(completed_at=timezone.now() - timedelta(days=days))


@pytest.fixture
def finished_tasks(team: Team) -> dict[str, Task]:
    """Old tasks of every terminal status, a recent one, and non-terminal ones."""
    tasks: dict[str, Task] = {}
    tasks["completed"] = finished(team)
    tasks["failed"] = finished(team, status_code=400)
    tasks["cancelled"] = services.cancel_task(team, make(team).pk)
    timed_out, _ = waiting(team)
    Task.objects.filter(pk=timed_out.pk).update(wait_deadline=timezone.now())
    services.expire_overdue()
    tasks["timeout"] = timed_out
    for task in tasks.values():
        age(task, 40)
    tasks["recent"] = finished(team)
    age(tasks["recent"], 10)
    tasks["pending"] = make(team)
    tasks["delayed"] = make(team, delay_until=timezone.now() + timedelta(days=1))
    tasks["processing"] = claimed(team)
    tasks["waiting"] = waiting(team)[0]
    for name in ("pending", "delayed", "processing", "waiting"):
        # Even a stray completed_at never makes a live task prunable: status decides.
        age(tasks[name], 40)
    return tasks


def remaining() -> set[Any]:
    return set(Task.objects.values_list("pk", flat=True))


def test_prune_deletes_only_old_finished_tasks(finished_tasks: dict[str, Task]) -> None:
    assert Attempt.objects.filter(task=finished_tasks["completed"]).exists()
    out = run("asyncqueue_prune", "--older-than", "30")
    lines = out.splitlines()
    assert lines[0].startswith("Deleting 4 finished task(s) that finished before ")
    assert lines[0].endswith(", 500 per batch.")
    assert lines[-1] == "Deleted 4 finished task(s)."
    kept = {"recent", "pending", "delayed", "processing", "waiting"}
    assert remaining() == {finished_tasks[name].pk for name in kept}
    gone = [finished_tasks[name].pk for name in ("completed", "failed", "cancelled", "timeout")]
    assert not Attempt.objects.filter(task_id__in=gone).exists()
    assert run("asyncqueue_prune", "--older-than", "30").splitlines()[-1] == (
        "Deleted 0 finished task(s)."
    )


def test_prune_dry_run_deletes_nothing(finished_tasks: dict[str, Task]) -> None:
    before = remaining()
    out = run("asyncqueue_prune", "--older-than", "30", "--dry-run")
    assert out.startswith("Would delete 4 finished task(s) that finished before ")
    assert out.endswith(" (cancelled: 1, completed: 1, failed: 1, timeout: 1) (dry run).\n")
    assert remaining() == before
    out = run("asyncqueue_prune", "--older-than", "5", "--dry-run")
    assert "Would delete 5 finished task(s)" in out
    assert remaining() == before


def test_prune_older_than_zero_days_keeps_live_tasks(finished_tasks: dict[str, Task]) -> None:
    run("asyncqueue_prune", "--older-than", "0")
    live = {"pending", "delayed", "processing", "waiting"}
    assert remaining() == {finished_tasks[name].pk for name in live}


def test_prune_keeps_tasks_inside_their_idempotency_window(team: Team) -> None:
    created = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/x"), idempotency_key="order-1"
    )
    task = services.cancel_task(team, created.task.pk)
    age(task, 40)
    assert run("asyncqueue_prune", "--older-than", "30").splitlines()[-1] == (
        "Deleted 0 finished task(s)."
    )
    Task.objects.filter(pk=task.pk).update(
        idempotency_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert run("asyncqueue_prune", "--older-than", "30").splitlines()[-1] == (
        "Deleted 1 finished task(s)."
    )


def test_prune_in_batches_with_a_progress_bar(team: Team) -> None:
    for _ in range(5):
        age(finished(team), 2)
    out = run("asyncqueue_prune", "--older-than", "1", "--batch-size", "2")
    lines = out.splitlines()
    assert lines[0].endswith(", 2 per batch.")
    assert lines[1:-1] == [
        "[############..................] 2/5 (40%)",
        "[########################......] 4/5 (80%)",
        "[##############################] 5/5 (100%)",
    ]
    assert lines[-1] == "Deleted 5 finished task(s)."
    assert Task.objects.count() == 0


def test_prune_progress_bar_is_quiet_at_verbosity_0(team: Team) -> None:
    age(finished(team), 2)
    out = run("asyncqueue_prune", "--older-than", "1", "-v", "0")
    assert "[" not in out
    assert out.splitlines()[-1] == "Deleted 1 finished task(s)."


def test_prune_finished_service_reports_progress_per_batch(team: Team) -> None:
    for _ in range(5):
        age(finished(team), 2)
    seen: list[int] = []
    cutoff = timezone.now() - timedelta(days=1)
    assert services.prune_finished(cutoff, 2, progress=seen.append) == 5
    assert seen == [2, 4, 5]
    assert services.prune_finished(cutoff, 2, progress=seen.append) == 0
    assert seen == [2, 4, 5]


def test_prune_finished_keeps_finished_batches_when_interrupted(team: Team) -> None:
    for _ in range(5):
        age(finished(team), 2)

    def stop(total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        services.prune_finished(timezone.now() - timedelta(days=1), 2, progress=stop)
    assert Task.objects.count() == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: --older-than"),
        (["--older-than", "-1"], "--older-than must be between 0 and 36500 days."),
        (["--older-than", "36501"], "--older-than must be between 0 and 36500 days."),
        (["--older-than", "1.5"], "argument --older-than: invalid int value: '1.5'"),
        (["--older-than", "1", "--batch-size", "0"], "--batch-size must be between 1 and 10000."),
        (["--older-than", "1", "--batch-size", "10001"], "--batch-size must be between 1 and"),
        (["--older-than", "1", "--batch-size", "x"], "argument --batch-size: invalid int value"),
    ],
    ids=["missing", "negative", "too-old", "fraction", "zero-batch", "huge-batch", "bad-batch"],
)
def test_prune_bad_arguments(
    finished_tasks: dict[str, Task], args: list[str], message: str
) -> None:
    before = remaining()
    assert message in fails("asyncqueue_prune", *args)
    assert remaining() == before
