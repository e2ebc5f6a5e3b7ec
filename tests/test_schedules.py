"""Schedules: ``/v1/schedules`` and ``schedule`` on ``POST /v1/tasks``, stored as
django-celery-beat rows; each tick creates exactly one task through the normal create path,
with two beats or a duplicated tick; a missed tick runs once; pause, resume, delete; the
daylight-saving changes of Europe/Paris; bad input is a 400 naming the field."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from rest_framework.test import APIClient

from asyncqueue_django import services, tasks
from asyncqueue_django.exceptions import ScheduleLimitReached
from asyncqueue_django.models import Schedule, Task, Team
from asyncqueue_django.services import schedules
from asyncqueue_django.values import Message
from tests.settings import ASYNCQUEUE as TEST_SETTINGS
from tests.worker import wait_for

TARGET = "http://127.0.0.1:9/report"
TEMPLATE = {"targetUrl": TARGET, "payload": {"report": "sales"}}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make(
    team: Team,
    cron: str = "* * * * *",
    zone: str = "UTC",
    since: datetime | None = None,
    **kwargs: Any,
) -> Schedule:
    """A schedule active since ``since`` (a fake clock's start)."""
    schedule = services.create_schedule(team, cron, zone, dict(TEMPLATE), **kwargs)
    if since is not None:
        Schedule.objects.filter(pk=schedule.pk).update(active_since=since)
        schedule.refresh_from_db()
    return schedule


def post(client: APIClient, path: str, body: Any = None, **kwargs: Any) -> Any:
    return client.post(path, body, format="json", **kwargs)


# --------------------------------------------------------------------------- the API


def test_create_stores_beat_rows_and_answers_the_schedule(client: APIClient, team: Team) -> None:
    before = timezone.now()
    response = post(
        client,
        "/v1/schedules",
        {"cron": "0 9 * * mon-fri", "timezone": "Europe/Paris", "task": TEMPLATE},
    )
    assert response.status_code == 201, response.json()
    body = response.json()["schedule"]
    assert set(body) >= {
        "id",
        "cron",
        "timezone",
        "task",
        "paused",
        "nextRunAt",
        "lastRunAt",
        "lastTaskId",
        "createdAt",
    }
    assert body["cron"] == "0 9 * * 1-5"
    assert body["timezone"] == "Europe/Paris"
    assert body["task"] == {"targetUrl": TARGET, "payload": {"report": "sales"}, "method": "POST"}
    assert body["paused"] is False
    assert body["lastRunAt"] is None
    assert body["lastTaskId"] is None
    next_run = datetime.fromisoformat(body["nextRunAt"])
    local = next_run.astimezone(schedules.cron.zone("Europe/Paris"))
    assert (local.hour, local.minute, local.isoweekday() <= 5) == (9, 0, True)
    assert before < next_run <= before + timedelta(days=4)
    # What beat runs: a PeriodicTask with a crontab of its own, in the schedule's time zone.
    beat = PeriodicTask.objects.get(name=f"asyncqueue-schedule-{body['id']}")
    assert beat.task == "asyncqueue.run_schedule"
    assert beat.enabled
    assert beat.crontab is not None
    assert str(beat.crontab.timezone) == "Europe/Paris"
    assert (beat.crontab.minute, beat.crontab.hour, beat.crontab.day_of_week) == ("0", "9", "1-5")
    assert not Task.objects.exists()  # a schedule creates no task until it ticks


def test_post_tasks_with_schedule_creates_a_schedule(client: APIClient, team: Team) -> None:
    response = post(
        client, "/v1/tasks", {**TEMPLATE, "schedule": "*/5 * * * *", "timezone": "Asia/Tokyo"}
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {"schedule"}
    assert body["schedule"]["cron"] == "*/5 * * * *"
    assert body["schedule"]["timezone"] == "Asia/Tokyo"
    assert body["schedule"]["task"]["targetUrl"] == TARGET
    assert "schedule" not in body["schedule"]["task"]
    assert not Task.objects.exists()
    listed = client.get("/v1/schedules").json()["schedules"]
    assert [s["id"] for s in listed] == [body["schedule"]["id"]]


def test_get_list_patch_pause_resume_delete(client: APIClient, team: Team) -> None:
    first = post(client, "/v1/schedules", {"cron": "0 9 * * *", "task": TEMPLATE}).json()
    second = post(client, "/v1/schedules/", {"cron": "0 10 * * *", "task": TEMPLATE}).json()
    sid = first["schedule"]["id"]
    listed = client.get("/v1/schedules").json()["schedules"]
    assert [s["id"] for s in listed] == [second["schedule"]["id"], sid]  # newest first
    assert client.get(f"/v1/schedules/{sid}").json() == first

    patched = client.patch(
        f"/v1/schedules/{sid}",
        {"cron": "30 8 * * *", "timezone": "Europe/Paris", "task": {**TEMPLATE, "priority": 9}},
        format="json",
    )
    assert patched.status_code == 200, patched.json()
    body = patched.json()["schedule"]
    assert (body["cron"], body["timezone"], body["task"]["priority"]) == (
        "30 8 * * *",
        "Europe/Paris",
        9,
    )
    crontab = PeriodicTask.objects.get(name=f"asyncqueue-schedule-{sid}").crontab
    assert crontab is not None
    assert (crontab.minute, crontab.hour) == ("30", "8")

    paused = post(client, f"/v1/schedules/{sid}/pause").json()["schedule"]
    assert paused["paused"] is True
    assert paused["nextRunAt"] is None
    assert not PeriodicTask.objects.get(name=f"asyncqueue-schedule-{sid}").enabled
    assert post(client, f"/v1/schedules/{sid}/pause").status_code == 200  # again: no change
    resumed = post(client, f"/v1/schedules/{sid}/resume").json()["schedule"]
    assert resumed["paused"] is False
    assert resumed["nextRunAt"] is not None
    assert PeriodicTask.objects.get(name=f"asyncqueue-schedule-{sid}").enabled
    assert client.patch(f"/v1/schedules/{sid}", {"paused": True}, format="json").json()["schedule"][
        "paused"
    ]

    deleted = client.delete(f"/v1/schedules/{sid}")
    assert deleted.status_code == 200
    assert deleted.json()["schedule"]["id"] == sid
    assert not PeriodicTask.objects.filter(name=f"asyncqueue-schedule-{sid}").exists()
    # The other schedule's crontab in use; the deleted one's goes later (its own message).
    assert CrontabSchedule.objects.filter(periodictask__isnull=False).count() == 1
    assert client.get(f"/v1/schedules/{sid}").status_code == 404
    assert client.delete(f"/v1/schedules/{sid}").status_code == 404


def test_another_teams_schedule_is_not_found(client: APIClient, team: Team) -> None:
    other = services.get_or_create_team("other")[0]
    theirs = make(other)
    for method, path in [
        ("get", f"/v1/schedules/{theirs.pk}"),
        ("patch", f"/v1/schedules/{theirs.pk}"),
        ("delete", f"/v1/schedules/{theirs.pk}"),
        ("post", f"/v1/schedules/{theirs.pk}/pause"),
        ("post", f"/v1/schedules/{theirs.pk}/resume"),
        ("get", "/v1/schedules/not-a-uuid"),
    ]:
        response = getattr(client, method)(path, {}, format="json")
        assert response.status_code == 404, (method, path)
        assert response.json()["error"] == "Schedule not found"
    assert client.get("/v1/schedules").json() == {"schedules": []}
    assert PeriodicTask.objects.get(name=f"asyncqueue-schedule-{theirs.pk}").enabled


def test_schedules_need_an_api_key(anon: APIClient) -> None:
    assert anon.get("/v1/schedules").status_code == 401
    assert post(anon, "/v1/schedules", {"cron": "* * * * *", "task": TEMPLATE}).status_code == 401


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"cron": "61 * * * *", "task": TEMPLATE}, "cron", "out of range"),
        ({"cron": "* * *", "task": TEMPLATE}, "cron", "5 fields"),
        ({"cron": 5, "task": TEMPLATE}, "cron", "string"),
        ({"cron": "0 0 1 * 1", "task": TEMPLATE}, "cron", "not both"),
        (
            {"cron": "* * * * *", "timezone": "Mars/Olympus", "task": TEMPLATE},
            "timezone",
            "Unknown",
        ),
        ({"cron": "* * * * *", "timezone": None, "task": TEMPLATE}, "timezone", "null"),
        ({"cron": "* * * * *"}, "task", "required"),
        ({"cron": "* * * * *", "task": []}, "task", ""),
        ({"cron": "* * * * *", "task": {}}, "task.targetUrl", "required"),
        ({"cron": "* * * * *", "task": {"targetUrl": "ftp://x"}}, "task.targetUrl", ""),
        ({"cron": "* * * * *", "task": {**TEMPLATE, "priority": 11}}, "task.priority", ""),
        ({"cron": "* * * * *", "task": {**TEMPLATE, "maxRetry": 1}}, "task.maxRetry", "did you"),
        ({"cron": "* * * * *", "task": {**TEMPLATE, "delay": 5}}, "task.delay", "tick"),
        (
            {"cron": "* * * * *", "task": {**TEMPLATE, "idempotencyKey": "k"}},
            "task.idempotencyKey",
            "",
        ),
        (
            {"cron": "* * * * *", "task": {**TEMPLATE, "waitForSignal": True}},
            "task.waitForSignal",
            "",
        ),
        (
            {"cron": "* * * * *", "task": {**TEMPLATE, "headers": {"Authorization": "tok_nope"}}},
            "task.headers.Authorization",
            "does not exist",
        ),
        ({"cron": "* * * * *", "task": TEMPLATE, "paused": "yes"}, "paused", ""),
        ({"cron": "* * * * *", "task": TEMPLATE, "crn": 1}, "crn", "did you mean"),
        ([], "body", "JSON object"),
    ],
)
def test_bad_schedules_are_400_naming_the_field(
    client: APIClient, body: Any, field: str, words: str
) -> None:
    response = post(client, "/v1/schedules", body)
    assert response.status_code == 400, response.json()
    fields = response.json()["fields"]
    assert field in fields, fields
    assert words.lower() in fields[field].lower()
    assert not Schedule.objects.exists()
    assert not PeriodicTask.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**TEMPLATE, "schedule": "bad"}, "schedule"),
        ({**TEMPLATE, "schedule": "* * * * *", "timezone": "Nowhere"}, "timezone"),
        ({**TEMPLATE, "timezone": "UTC"}, "timezone"),
        ({**TEMPLATE, "schedule": "* * * * *", "delayUntil": "2030-01-01T00:00:00Z"}, "delayUntil"),
        ({**TEMPLATE, "schedule": "* * * * *", "priority": 0}, "priority"),
        ({"schedule": "* * * * *"}, "targetUrl"),
        (
            {**TEMPLATE, "schedule": "* * * * *", "headers": {"X-Key": "tok_missing"}},
            "headers.X-Key",
        ),
    ],
)
def test_bad_scheduled_tasks_are_400_with_the_task_field_names(
    client: APIClient, body: Any, field: str
) -> None:
    response = post(client, "/v1/tasks", body)
    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"], response.json()
    assert not Schedule.objects.exists()
    assert not Task.objects.exists()


def test_schedule_with_idempotency_key_header_is_refused(client: APIClient) -> None:
    response = post(
        client, "/v1/tasks", {**TEMPLATE, "schedule": "* * * * *"}, HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["fields"]


def test_bad_patches_are_400_and_change_nothing(client: APIClient, team: Team) -> None:
    schedule = make(team, "0 9 * * *")
    for body, field in [
        ({"cron": "nope"}, "cron"),
        ({"timezone": "Not/AZone"}, "timezone"),
        ({"task": {"targetUrl": 3}}, "task.targetUrl"),
        ({"paused": None}, "paused"),
        ({"id": "x"}, "id"),
    ]:
        response = client.patch(f"/v1/schedules/{schedule.pk}", body, format="json")
        assert response.status_code == 400, (body, response.json())
        assert field in response.json()["fields"]
    assert client.get(f"/v1/schedules/{schedule.pk}").json()["schedule"]["cron"] == "0 9 * * *"


@pytest.mark.parametrize(
    "body",
    [
        None,
        "* * * * *",
        123,
        {"cron": None, "task": None},
        {"cron": "\x00", "timezone": "\x00", "task": {"targetUrl": "\x00"}},
        {"cron": "* " * 5000, "task": TEMPLATE},
        {"cron": "*/99999999999999999999 * * * *", "task": TEMPLATE},
        {"cron": "1-99999999999999999999 * * * *", "task": TEMPLATE},
        {"cron": "* * * * *", "timezone": "a" * 10000, "task": TEMPLATE},
        {"cron": "* * * * *", "timezone": ["UTC"], "task": TEMPLATE},
        {"cron": "* * * * *", "task": {**TEMPLATE, "headers": {"\x00": "x"}}},
        {"cron": "* * * * *", "task": {**TEMPLATE, "metadata": {"a": "\x00"}}},
    ],
)
def test_no_input_makes_a_500(client: APIClient, team: Team, body: Any) -> None:
    schedule = make(team)
    for method, path in [
        ("post", "/v1/schedules"),
        ("patch", f"/v1/schedules/{schedule.pk}"),
        ("post", "/v1/tasks"),
    ]:
        response = getattr(client, method)(path, body, format="json")
        if body is None and method == "patch":  # no body: nothing to change
            assert response.status_code == 200
            continue
        assert 400 <= response.status_code < 500, (method, path, response.content[:300])
    wrapped = post(client, "/v1/tasks", {**TEMPLATE, "schedule": body})
    assert 400 <= wrapped.status_code < 500 or wrapped.status_code == 201


def test_secret_looking_headers_are_redacted_in_the_template(client: APIClient) -> None:
    headers = {"Authorization": "Bearer s3cret", "X-Trace": "visible"}
    body = post(
        client, "/v1/schedules", {"cron": "* * * * *", "task": {**TEMPLATE, "headers": headers}}
    ).json()["schedule"]
    assert body["task"]["headers"]["X-Trace"] == "visible"
    assert "s3cret" not in str(body)
    assert "s3cret" not in str(client.get("/v1/schedules").json())
    # Stored as given: the tick's task sends it.
    assert Schedule.objects.get().task_template["headers"] == headers


# --------------------------------------------------------------------------- ticks


def test_every_minute_one_task_per_tick_with_two_beats(team: Team) -> None:
    """A fake clock over five minutes; at each tick two beats fire (and one tick message is
    delivered a third time): exactly one task per tick, the tick key is the tick time."""
    start = utc(2026, 6, 1, 12, 0, 30)
    schedule = make(team, since=start)
    made = []
    for minute in range(1, 6):
        tick = utc(2026, 6, 1, 12, minute)
        for delay in (0.05, 0.4, 2.0):  # beat A, beat B, a redelivered message
            task = services.run_schedule(schedule.pk, now=tick + timedelta(seconds=delay))
            if task is not None:
                made.append((tick, task.pk))
        schedule.refresh_from_db()
        assert schedule.last_tick_at == tick
        assert schedule.last_task_id == made[-1][1]
    assert [tick.minute for tick, _ in made] == [1, 2, 3, 4, 5]
    assert Task.objects.count() == 5
    task = Task.objects.get(pk=made[-1][1])
    assert (task.target_url, task.payload, task.team_id) == (TARGET, {"report": "sales"}, team.pk)


def test_a_firing_a_little_early_counts_for_its_tick(team: Team) -> None:
    schedule = make(team, since=utc(2026, 6, 1, 11, 59, 30))
    tick = utc(2026, 6, 1, 12, 0)
    # The beat's clock is 3 s ahead of the worker's: still the 12:00 tick, once.
    assert services.run_schedule(schedule.pk, now=tick - timedelta(seconds=3)) is not None
    assert services.run_schedule(schedule.pk, now=tick + timedelta(seconds=1)) is None
    schedule.refresh_from_db()
    assert schedule.last_tick_at == tick


def test_no_tick_before_the_schedule_existed(team: Team) -> None:
    """Beat may fire a new entry at once; the tick before creation does not run."""
    schedule = make(team, since=utc(2026, 6, 1, 12, 0, 40))
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 0, 41)) is None
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 1, 0)) is not None


def test_after_downtime_a_missed_tick_runs_once(team: Team) -> None:
    schedule = make(team, since=utc(2026, 6, 1, 11, 0))
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 0, 1)) is not None
    # Beat and workers down from 12:00:30 to 12:07:30; beat fires the missed entry once.
    first = services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 7, 30))
    again = services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 7, 31))
    assert first is not None
    assert again is None
    assert Task.objects.count() == 2
    schedule.refresh_from_db()
    assert schedule.last_tick_at == utc(2026, 6, 1, 12, 7)
    assert schedule.last_run_at == utc(2026, 6, 1, 12, 7, 30)


def test_a_late_duplicate_of_an_old_tick_creates_nothing(team: Team) -> None:
    schedule = make(team, "0 * * * *", since=utc(2026, 6, 1, 9, 30))
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 11, 0, 1)) is not None
    schedule.refresh_from_db()
    assert schedule.last_tick_at == utc(2026, 6, 1, 11)
    # A message of the 10:00 tick that arrives now is read as "now", i.e. the 11:00 tick.
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 11, 20)) is None
    assert Task.objects.count() == 1


def test_paused_schedules_do_not_tick_and_resume_skips_what_was_missed(team: Team) -> None:
    schedule = make(team, since=utc(2026, 6, 1, 11, 0))
    services.pause_schedule(team, schedule.pk, now=utc(2026, 6, 1, 12, 0, 30))
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 1)) is None
    services.resume_schedule(team, schedule.pk, now=utc(2026, 6, 1, 12, 5, 30))
    # Beat may fire at once on resume: the 12:05 tick fell while paused.
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 5, 31)) is None
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 6)) is not None
    assert Task.objects.count() == 1


def test_a_deleted_schedule_does_not_tick(
    team: Team, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """Its periodic task goes at once; its crontab a while later, by a message of its own."""
    from asyncqueue_django.services import engine

    schedule = make(team, since=utc(2026, 6, 1, 11, 0))
    crontab_id = PeriodicTask.objects.get(pk=schedule.periodic_task_id).crontab_id
    sent: list[Message] = []
    monkeypatch.setattr(engine, "publisher", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        services.delete_schedule(team, schedule.pk)
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 0)) is None
    assert not PeriodicTask.objects.exists()
    assert CrontabSchedule.objects.filter(pk=crontab_id).exists()
    assert [(m.task_name, m.args, m.queue, m.countdown) for m in sent] == [
        ("asyncqueue.drop_crontab", (str(crontab_id),), "", schedules.CRONTAB_DROP_DELAY)
    ]
    assert tasks.drop_crontab.run(str(crontab_id)) is True
    assert not CrontabSchedule.objects.exists()
    assert tasks.drop_crontab.run(str(crontab_id)) is False  # a duplicate message


def test_a_crontab_used_again_is_not_dropped(team: Team) -> None:
    schedule = make(team)
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    other = PeriodicTask.objects.create(name="mine", task="x", crontab_id=task.crontab_id)
    services.delete_schedule(team, schedule.pk)
    assert services.drop_unused_crontab(other.crontab_id) is False  # type: ignore[arg-type]
    assert CrontabSchedule.objects.filter(pk=other.crontab_id).exists()


@pytest.mark.django_db(transaction=True)
def test_a_delete_between_beats_two_reads_does_not_break_beat() -> None:
    """django-celery-beat's ``DatabaseScheduler`` lists the enabled periodic tasks, then reads
    their crontabs in a second query (``prefetch_related``), then builds an entry per task. A
    schedule deleted between the two reads must leave every entry buildable: an entry that
    raises there stops beat, and every schedule and sweep with it."""
    from celery import current_app
    from django.db.models import prefetch_related_objects
    from django_celery_beat.schedulers import ModelEntry

    team = services.get_or_create_team("beat")[0]
    doomed, kept = make(team), make(team, "0 9 * * *")
    listed = list(PeriodicTask.objects.filter(enabled=True))  # beat's first read
    services.delete_schedule(team, doomed.pk)  # another process, committed in between
    prefetch_related_objects(listed, "interval", "crontab", "solar", "clocked")  # its second
    entries = [ModelEntry(model, app=current_app) for model in listed]
    assert {e.name for e in entries} == {
        schedules.beat_name(doomed.pk),
        schedules.beat_name(kept.pk),
    }
    # The deleted one's entry fires into a tick that creates nothing.
    assert services.run_schedule(doomed.pk) is None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_drop_message_reaches_a_worker_on_the_default_queue(celery_worker: Any) -> None:
    """The crontab message goes to Celery's default queue (``""``), where a worker takes it."""
    from asyncqueue_django.services import engine

    crontab = CrontabSchedule.objects.create(minute="5")
    assert engine.publish(Message("asyncqueue.drop_crontab", (str(crontab.pk),), "", 5, 0))
    wait_for(lambda: not CrontabSchedule.objects.filter(pk=crontab.pk).exists())


def test_deleting_the_beat_entry_in_the_admin_deletes_the_schedule(team: Team) -> None:
    schedule = make(team)
    PeriodicTask.objects.get(pk=schedule.periodic_task_id).delete()
    assert not Schedule.objects.exists()


def test_admin_edits_of_the_crontab_are_what_runs(team: Team) -> None:
    schedule = make(team, "0 9 * * *", since=utc(2026, 6, 1))
    crontab = CrontabSchedule.objects.get(periodictask__pk=schedule.periodic_task_id)
    crontab.hour = "10"
    crontab.timezone = "America/New_York"  # type: ignore[assignment]
    crontab.save()
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 9, 0, 1)) is None
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 14, 0, 1)) is not None  # 10 EDT
    data = services.get_schedule(team, schedule.pk)
    assert schedules.cron_text(data.periodic_task.crontab) == "0 10 * * *"  # type: ignore[arg-type]


def test_ticks_go_through_the_create_path(team: Team) -> None:
    """Vault references are checked at each tick: a token revoked since creation records the
    tick with an error and creates nothing; the next tick tries again."""
    token = services.create_token(team, "report-api", "s3cret")
    schedule = services.create_schedule(
        team, "* * * * *", "UTC", {**TEMPLATE, "headers": {"Authorization": token.pk}}
    )
    Schedule.objects.filter(pk=schedule.pk).update(active_since=utc(2026, 6, 1, 12))
    task = services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 1))
    assert task is not None
    assert task.headers == {"Authorization": token.pk}
    services.revoke_token(team, token.pk)
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 2)) is None
    schedule.refresh_from_db()
    assert "revoked" in schedule.last_error
    assert schedule.last_tick_at == utc(2026, 6, 1, 12, 2)
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 12, 2, 5)) is None  # not retried
    assert Task.objects.count() == 1


def test_a_template_with_flow_control_and_polling_makes_such_tasks(
    client: APIClient, team: Team
) -> None:
    """Every create field a template may hold reaches the task a tick creates: flow control
    (stored as JSON, read back as the API validated it) and a provider's polling."""
    body = {
        "cron": "* * * * *",
        "task": {
            **TEMPLATE,
            "flowControl": {"key": "partner", "parallelism": 2},
            "provider": "replicate",
        },
    }
    answer = post(client, "/v1/schedules", body)
    assert answer.status_code == 201, answer.json()
    schedule_id = answer.json()["schedule"]["id"]
    assert answer.json()["schedule"]["task"]["flowControl"]["key"] == "partner"
    Schedule.objects.filter(pk=schedule_id).update(active_since=utc(2026, 6, 1, 12))
    task = services.run_schedule(schedule_id, now=utc(2026, 6, 1, 12, 1))
    assert task is not None
    assert (task.flow_key, task.flow_parallelism) == ("partner", 2)
    assert task.provider == "replicate"
    assert task.poll_config is not None


def test_a_test_keys_schedule_makes_sandbox_tasks(team: Team) -> None:
    test_key = services.create_api_key(team, "sandbox", mode="test").raw_key
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {test_key}")
    body = post(c, "/v1/schedules", {"cron": "* * * * *", "task": TEMPLATE}).json()["schedule"]
    assert body["sandbox"] is True
    Schedule.objects.filter(pk=body["id"]).update(active_since=utc(2026, 6, 1))
    task = services.run_schedule(body["id"], now=utc(2026, 6, 1, 0, 1))
    assert task is not None
    assert task.sandbox


def test_a_test_key_changes_only_sandbox_schedules(team: Team) -> None:
    """A test key never makes a real call, nor stops one: on a live schedule it may read, but
    not change the template (the next tick would call its target for real), pause, resume or
    delete it; its own (sandbox) schedules it changes freely."""
    schedule = make(team)
    test_key = services.create_api_key(team, "sandbox", mode="test").raw_key
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {test_key}")
    other = {"targetUrl": "https://example.com/elsewhere"}
    path = f"/v1/schedules/{schedule.pk}"
    for answer in (
        c.patch(path, {"task": other}, format="json"),
        c.patch(path, {"paused": True}, format="json"),
        post(c, path + "/pause"),
        post(c, path + "/resume"),
        c.delete(path),
    ):
        assert answer.status_code == 403, answer.json()
        assert answer.json()["code"] == "test_key_cannot_change_live"
    assert c.get(path).status_code == 200
    schedule.refresh_from_db()
    assert schedule.task_template["targetUrl"] == TARGET
    assert schedule.periodic_task.enabled
    own = post(c, "/v1/schedules", {"cron": "* * * * *", "task": TEMPLATE}).json()["schedule"]
    own_path = f"/v1/schedules/{own['id']}"
    assert c.patch(own_path, {"task": other}, format="json").status_code == 200
    assert post(c, own_path + "/pause").status_code == 200
    assert c.delete(own_path).status_code == 200


def test_last_run_and_task_are_shown(client: APIClient, team: Team) -> None:
    schedule = make(team, since=utc(2026, 6, 1))
    task = services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 0, 1, 2))
    assert task is not None
    body = client.get(f"/v1/schedules/{schedule.pk}").json()["schedule"]
    assert body["lastRunAt"] == "2026-06-01T00:01:02Z"
    assert body["lastTaskId"] == str(task.pk)
    assert body["lastError"] is None
    assert client.get(f"/v1/tasks/{task.pk}").status_code == 200


@pytest.mark.parametrize(
    ("cron", "window", "expected"),
    [
        # Spring forward, 2026-03-29 02:00 → 03:00: 02:30 does not exist and runs at 03:30 CEST.
        (
            "30 2 * * *",
            (utc(2026, 3, 28, 1), utc(2026, 3, 30, 12)),
            ["03-28 01:30", "03-29 01:30", "03-30 00:30"],
        ),
        # Fall back, 2026-10-25 03:00 → 02:00: 02:30 happens twice and runs once.
        (
            "30 2 * * *",
            (utc(2026, 10, 24, 0), utc(2026, 10, 26, 12)),
            ["10-24 00:30", "10-25 00:30", "10-26 01:30"],
        ),
    ],
)
def test_dst_in_paris_with_two_beats(
    team: Team, cron: str, window: tuple[datetime, datetime], expected: list[str]
) -> None:
    """Two beats fire the schedule's own PeriodicTask (django-celery-beat's crontab from its
    row, asked every 30 s of a fake clock): exactly one task per tick, no duplicate and no
    skip across the change."""
    start, end = window
    schedule = make(team, cron, "Europe/Paris", since=start)
    beat_entry = PeriodicTask.objects.get(pk=schedule.periodic_task_id).schedule
    now = [start]
    beat_entry.nowfun = lambda: now[0].astimezone(beat_entry.tz)
    last_run = {"a": start, "b": start + timedelta(seconds=7)}
    ran: list[datetime] = []
    t = start
    while t < end:
        now[0] = t
        for beat in ("a", "b"):
            if beat_entry.is_due(last_run[beat])[0]:
                last_run[beat] = t
                if services.run_schedule(schedule.pk, now=t + timedelta(seconds=0.3)):
                    ran.append(Schedule.objects.get(pk=schedule.pk).last_tick_at)  # type: ignore[arg-type]
        t += timedelta(seconds=30)
    assert [r.strftime("%m-%d %H:%M") for r in ran] == expected
    assert Task.objects.count() == len(expected)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="real concurrency: PostgreSQL")
def test_two_beats_at_the_same_instant_make_one_task() -> None:
    """Threads on their own connections fire the same tick at once, many times over."""
    team = services.get_or_create_team("race")[0]
    schedule = make(team, since=utc(2026, 6, 1))
    for minute in range(1, 11):
        barrier = threading.Barrier(4)
        results: list[Any] = []

        def fire(
            tick_minute: int = minute,
            barrier: threading.Barrier = barrier,
            results: list[Any] = results,
        ) -> None:
            try:
                barrier.wait()
                results.append(
                    services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 0, tick_minute, 1))
                )
            finally:
                connections.close_all()

        threads = [threading.Thread(target=fire) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len([r for r in results if r is not None]) == 1, results
    assert Task.objects.filter(team=team).count() == 10


# --------------------------------------------------------------------------- the per-team limit

LIMIT_3 = {**TEST_SETTINGS, "MAX_SCHEDULES_PER_TEAM": 3}


def test_a_team_at_its_schedule_limit_gets_409_naming_the_limit(
    client: APIClient, team: Team
) -> None:
    """Live, sandbox and paused schedules all count (beat loads each); another team's do not;
    deleting one makes room; both ways to create a schedule are limited."""
    other = services.get_or_create_team("other")[0]
    with override_settings(ASYNCQUEUE=LIMIT_3):
        make(other)
        make(team, sandbox=True)
        make(team, paused=True)
        assert (
            post(client, "/v1/schedules", {"cron": "0 9 * * *", "task": TEMPLATE}).status_code
            == 201
        )
        beat_rows = PeriodicTask.objects.count()
        for path, body in [
            ("/v1/schedules", {"cron": "0 9 * * *", "task": TEMPLATE}),
            ("/v1/tasks", {**TEMPLATE, "schedule": "0 9 * * *"}),
        ]:
            refused = post(client, path, body)
            assert refused.status_code == 409, refused.json()
            assert refused.json()["code"] == "schedule_limit_reached"
            assert "MAX_SCHEDULES_PER_TEAM = 3" in refused.json()["error"]
        assert PeriodicTask.objects.count() == beat_rows  # nothing half-made
        assert Schedule.objects.filter(team=team).count() == 3
        make(other)  # another team still has room
        oldest = Schedule.objects.filter(team=team).order_by("created_at").first()
        assert oldest is not None
        assert client.delete(f"/v1/schedules/{oldest.pk}").status_code in (200, 204)
        assert (
            post(client, "/v1/schedules", {"cron": "0 9 * * *", "task": TEMPLATE}).status_code
            == 201
        )


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="real concurrency: PostgreSQL")
def test_concurrent_creates_never_overshoot_the_limit() -> None:
    """Eight threads on their own connections create at once, against room for three."""
    team = services.get_or_create_team("race")[0]
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def create() -> None:
        try:
            barrier.wait()
            make(team)
            outcomes.append("created")
        except ScheduleLimitReached:
            outcomes.append("refused")
        finally:
            connections.close_all()

    with override_settings(ASYNCQUEUE=LIMIT_3):
        threads = [threading.Thread(target=create) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 5
    assert Schedule.objects.filter(team=team).count() == 3


# --------------------------------------------------------------------------- admin

ADMIN = "/admin/asyncqueue/schedule/"


def test_admin_lists_schedules_and_links_their_beat_entry(admin_client: Any, team: Team) -> None:
    schedule = services.create_schedule(
        team,
        "0 9 * * 1-5",
        "Europe/Paris",
        {**TEMPLATE, "headers": {"Authorization": "Bearer s3cret"}},
    )
    page = admin_client.get(ADMIN).content.decode()
    assert "0 9 * * 1-5" in page
    assert "Europe/Paris" in page
    detail = admin_client.get(f"{ADMIN}{schedule.pk}/change/").content.decode()
    beat_url = f"/admin/django_celery_beat/periodictask/{schedule.periodic_task_id}/change/"
    assert beat_url in detail
    assert "s3cret" not in detail
    assert admin_client.get(beat_url).status_code == 200  # edited where beat reads it
    assert admin_client.get(f"{ADMIN}add/").status_code == 403


def test_admin_actions_pause_resume_and_delete(admin_client: Any, team: Team) -> None:
    one, two = make(team), make(team, "0 9 * * *")

    def act(action: str) -> Any:
        data = {"action": action, "_selected_action": [str(one.pk), str(two.pk)]}
        return admin_client.post(ADMIN, data, follow=True)

    response = act("pause_schedules")
    assert "Paused 2 schedule(s)." in [str(m) for m in response.context["messages"]]
    assert not PeriodicTask.objects.filter(enabled=True).exists()
    act("resume_schedules")
    assert PeriodicTask.objects.filter(enabled=True).count() == 2
    act("delete_schedules")
    assert not Schedule.objects.exists()
    assert not PeriodicTask.objects.exists()
    assert not CrontabSchedule.objects.filter(periodictask__isnull=False).exists()


def test_a_beat_entry_given_another_kind_of_schedule_in_the_admin(
    client: APIClient, team: Team
) -> None:
    """An operator gives the PeriodicTask an interval instead of its crontab: nothing breaks,
    no tick runs, and a PATCH with a cron puts a crontab back."""
    from django_celery_beat.models import IntervalSchedule

    schedule = make(team, since=utc(2026, 6, 1))
    beat = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    beat.crontab = None
    beat.interval = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    beat.save()
    body = client.get(f"/v1/schedules/{schedule.pk}").json()["schedule"]
    assert (body["cron"], body["nextRunAt"]) == (None, None)
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 0, 1)) is None
    refused = client.patch(f"/v1/schedules/{schedule.pk}", {"timezone": "UTC"}, format="json")
    assert refused.status_code == 400
    assert "cron" in refused.json()["fields"]
    fixed = client.patch(f"/v1/schedules/{schedule.pk}", {"cron": "0 9 * * *"}, format="json")
    assert fixed.status_code == 200, fixed.json()
    assert fixed.json()["schedule"]["cron"] == "0 9 * * *"
    beat.refresh_from_db()
    assert beat.crontab is not None
    assert beat.interval is None


def test_a_deleted_teams_schedules_leave_beat_on_their_next_firing(team: Team) -> None:
    schedule = make(team, since=utc(2026, 6, 1))
    team.delete()  # cascades to the schedule; beat's rows are another app's
    assert not Schedule.objects.exists()
    assert PeriodicTask.objects.filter(pk=schedule.periodic_task_id).exists()
    assert services.run_schedule(schedule.pk, now=utc(2026, 6, 1, 0, 1)) is None
    assert not PeriodicTask.objects.exists()
    assert not CrontabSchedule.objects.filter(periodictask__isnull=False).exists()
    assert services.run_schedule("not-a-uuid") is None
