"""Queues (``services/queues.py`` and ``/v1/queues``): depth by status, and the pause switch.

A paused queue accepts tasks and starts none until it is resumed; waiting tasks on it still
take signals and time out. A team's pause stops only its own tasks; the operator's (no team)
stops every team's.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from asyncqueue_django import services
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import Queue, Task, Team
from asyncqueue_django.services import TaskSpec, engine
from asyncqueue_django.values import FlowControl, Message

URL = "http://127.0.0.1:9/x"


@pytest.fixture(autouse=True)
def sent() -> Iterator[list[Message]]:
    sent: list[Message] = []
    previous = engine.set_publisher(sent.append)
    yield sent
    engine.set_publisher(previous)


def make(team: Team, queue: str = "default", **spec: Any) -> Task:
    return services.create_task(team, TaskSpec(target_url=URL, queue=queue, **spec)).task


def ok() -> CallResult:
    return CallResult(status_code=200, headers={}, body=b"{}", duration_ms=5)


@pytest.fixture
def other(db: Any) -> Team:
    return services.get_or_create_team("other team")[0]


def test_a_paused_queue_accepts_tasks_and_starts_none_until_resumed(team: Team) -> None:
    services.pause_queue(team, "default")
    task = make(team)
    flow = make(team, flow_control=FlowControl("k", parallelism=3))
    assert task.status == "pending"
    assert services.claim_due_tasks("default", "w") == []
    assert services.claim_task(task.pk, "w") is None  # a message for it is a no-op too
    assert services.claim_task(flow.pk, "w") is None
    assert Task.objects.get(pk=task.pk).status == "pending"  # still accepted, just not run
    services.resume_queue(team, "default")
    claimed = services.claim_due_tasks("default", "w")
    assert sorted(str(t.pk) for t in claimed) == sorted([str(task.pk), str(flow.pk)])


def test_resume_wakes_a_worker_for_the_queue(
    team: Team, sent: list[Message], django_capture_on_commit_callbacks: Any
) -> None:
    services.pause_queue(team, "low")
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.resume_queue(team, "low")
    assert [(m.task_name, m.args[:2]) for m in sent] == [(engine.WAKE_TASK, ("task", "low"))]


def test_a_teams_pause_stops_only_its_own_tasks(team: Team, other: Team) -> None:
    services.pause_queue(team, "default")
    mine, theirs = make(team), make(other)
    claimed = services.claim_due_tasks("default", "w")
    assert [t.pk for t in claimed] == [theirs.pk]
    assert Task.objects.get(pk=mine.pk).status == "pending"


def test_the_operators_pause_stops_every_team_and_a_team_cannot_lift_it(
    team: Team, other: Team
) -> None:
    services.pause_queue(None, "default")
    make(team), make(other)
    assert services.claim_due_tasks("default", "w") == []
    info = services.resume_queue(team, "default")
    assert info.paused  # still paused by the operator
    assert services.claim_due_tasks("default", "w") == []
    services.resume_queue(None, "default")
    assert len(services.claim_due_tasks("default", "w")) == 2


def test_other_queues_keep_running(team: Team) -> None:
    services.pause_queue(team, "low")
    task = make(team, "high")
    assert [t.pk for t in services.claim_due_tasks("high", "w")] == [task.pk]


def test_waiting_tasks_still_take_signals_and_time_out_while_paused(team: Team) -> None:
    created = [
        services.create_task(team, TaskSpec(target_url=URL, wait_for_signal=True, max_wait_time=60))
        for _ in range(2)
    ]
    now = timezone.now()
    for c in created:
        claimed = services.claim_task(c.task.pk, "w", now=now)
        assert claimed is not None
        assert services.finish_attempt(claimed, ok(), worker="w", now=now) == "waiting"
    services.pause_queue(team, "default")
    services.pause_queue(None, "default")
    token = created[0].signal_token
    assert token is not None
    result = services.signal_task(token, "completed", {"ok": True}, now=now)
    assert result.task.status == "completed"
    assert services.expire_overdue(now + timedelta(seconds=61)) == 1
    assert Task.objects.get(pk=created[1].task.pk).status == "timeout"


def test_list_queues_counts_open_tasks_by_status_for_the_team(team: Team, other: Team) -> None:
    now = timezone.now()
    make(team)
    make(team)
    make(team, delay_until=now + timedelta(hours=1))
    make(team, "high")
    make(other)
    polling = make(team, "video")
    # A task polling its provider (as after a successful submit call) counts as polling.
    Task.objects.filter(pk=polling.pk).update(
        status="polling", wait_deadline=now + timedelta(minutes=10), poll_config={}
    )
    services.claim_due_tasks("high", "w")
    services.pause_queue(team, "idle")
    queues = {q.name: q for q in services.list_queues(team, now + timedelta(seconds=2))}
    assert set(queues) == {"default", "high", "idle", "video"}
    assert (queues["video"].polling, queues["video"].pending) == (1, 0)
    default = queues["default"]
    assert (default.pending, default.delayed, default.processing, default.waiting) == (2, 1, 0, 0)
    assert default.polling == 0
    assert default.oldest_pending_age >= 1.9  # due at creation, read 2 s on
    assert not default.paused
    assert queues["high"].processing == 1
    assert queues["idle"].paused
    assert queues["idle"].pending == 0


def test_pause_and_resume_are_idempotent(team: Team) -> None:
    services.pause_queue(team, "default")
    services.pause_queue(team, "default")
    assert Queue.objects.filter(team=team, name="default", paused=True).count() == 1
    services.resume_queue(team, "default")
    services.resume_queue(team, "default")
    assert not services.get_queue(team, "default").paused


# ------------------------------------------------------------------------------ the API


def test_api_lists_pauses_and_resumes(client: APIClient, team: Team) -> None:
    make(team)
    response = client.get("/v1/queues")
    assert response.status_code == 200
    assert response.json() == {
        "queues": [
            {
                "name": "default",
                "paused": False,
                "pending": 1,
                "delayed": 0,
                "processing": 0,
                "waiting": 0,
                "polling": 0,
                "oldestPendingAgeSeconds": response.json()["queues"][0]["oldestPendingAgeSeconds"],
            }
        ]
    }
    paused = client.post("/v1/queues/default/pause")
    assert paused.status_code == 200
    assert paused.json()["queue"]["paused"] is True
    assert client.get("/v1/queues").json()["queues"][0]["paused"] is True
    resumed = client.post("/v1/queues/default/resume/")
    assert resumed.status_code == 200
    assert resumed.json()["queue"]["paused"] is False


@pytest.mark.parametrize("name", ["bad name", "q" * 101, "%C2%84", "a%00b", "caf%C3%A9"])
@pytest.mark.parametrize("action", ["pause", "resume"])
def test_api_queue_name_must_be_a_queue_name(client: APIClient, name: str, action: str) -> None:
    answer = client.post(f"/v1/queues/{name}/{action}")
    assert answer.status_code == 400, answer.content
    assert "name" in answer.json()["fields"]
    assert not Queue.objects.exists()


def test_api_needs_a_key(anon: APIClient) -> None:
    assert anon.get("/v1/queues").status_code == 401
    assert anon.post("/v1/queues/default/pause").status_code == 401


@pytest.mark.parametrize(
    ("flow", "field"),
    [
        ({"parallelism": 2}, "flowControl.key"),
        ({"key": "", "parallelism": 2}, "flowControl.key"),
        ({"key": "a b", "parallelism": 2}, "flowControl.key"),
        ({"key": "k"}, "flowControl.parallelism"),
        ({"key": "k", "parallelism": 0}, "flowControl.parallelism"),
        ({"key": "k", "parallelism": "5"}, "flowControl.parallelism"),
        ({"key": "k", "rate": 1001}, "flowControl.rate"),
        ({"key": "k", "rate": 5, "period": 0}, "flowControl.period"),
        ({"key": "k", "rate": 5, "period": 1.5}, "flowControl.period"),
        ({"key": "k", "parallelism": 1, "burst": 3}, "flowControl.burst"),
        ("k", "flowControl.body"),
    ],
)
def test_api_refuses_a_bad_flow_control_naming_the_field(
    client: APIClient, flow: Any, field: str
) -> None:
    response = client.post("/v1/tasks", {"targetUrl": URL, "flowControl": flow}, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"], response.json()


def test_api_shows_the_flow_control_of_a_task(client: APIClient) -> None:
    body = {"targetUrl": URL, "flowControl": {"key": "partner", "rate": 10}}
    task = client.post("/v1/tasks", body, format="json").json()["task"]
    assert task["flowControl"] == {"key": "partner", "parallelism": None, "rate": 10, "period": 1}
    plain = client.post("/v1/tasks", {"targetUrl": URL}, format="json").json()["task"]
    assert plain["flowControl"] is None


# ------------------------------------------------------------------- the command


def test_command_pauses_lists_and_resumes(team: Team, capsys: Any) -> None:
    make(team, "low")
    call_command("asyncqueue_queues", "pause", "low")
    assert Queue.objects.get(team=None, name="low").paused
    call_command("asyncqueue_queues", "pause", "default", "--team", team.name)
    call_command("asyncqueue_queues", "list")
    out = capsys.readouterr().out
    assert "low" in out
    assert "paused" in out
    call_command("asyncqueue_queues", "resume", "low")
    assert not Queue.objects.get(team=None, name="low").paused


def test_command_refuses_bad_input(team: Team) -> None:
    with pytest.raises(CommandError):
        call_command("asyncqueue_queues", "pause", "bad name")
    with pytest.raises(CommandError):
        call_command("asyncqueue_queues", "pause", "low", "--team", "nobody")
    with pytest.raises(CommandError):
        call_command("asyncqueue_queues", "pause")
