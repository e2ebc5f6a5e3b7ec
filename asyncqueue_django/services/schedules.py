"""Schedules: a task template created again at every tick of a cron expression.

When a schedule runs is kept in django-celery-beat's rows: a ``CrontabSchedule`` of its own
(with its time zone) and a ``PeriodicTask`` that fires ``asyncqueue.run_schedule`` with the
schedule's id; paused is the ``PeriodicTask`` disabled. So the admin shows and edits them, and
the beat a project already runs (``DatabaseScheduler``) fires them. Each firing calls
:func:`run_schedule`, which works out the tick it stands for and creates the task through the
normal create path (input rules, Token Vault references, sandbox, dispatch on commit).

**Exactly one task per tick.** The tick is the latest tick of the cron at or before now (a
few seconds of clock skew allowed), never one before the schedule became active. A guarded
UPDATE moves the schedule's ``last_tick_at`` forward to it in the transaction that creates the
task: of two beats, or a message delivered twice, exactly one moves it and creates the task;
the other sees 0 rows. After downtime beat fires a missed schedule once, and that firing runs
the latest tick only, so missed ticks are not replayed one by one.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from asyncqueue_django import cron, tracing, validators
from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import (
    InvalidFields,
    InvalidScheduleInput,
    ScheduleLimitReached,
    ScheduleNotFound,
)
from asyncqueue_django.models import Schedule, Task, Team
from asyncqueue_django.services import engine, lifecycle, vault
from asyncqueue_django.values import Message, spec_of_body

logger = logging.getLogger(__name__)

#: The Celery task beat fires for every schedule.
TICK_TASK = "asyncqueue.run_schedule"
#: The message that deletes a deleted schedule's crontab, and how long after (seconds): far
#: longer than beat takes between reading the periodic tasks and reading their crontabs.
DROP_CRONTAB_TASK = "asyncqueue.drop_crontab"
CRONTAB_DROP_DELAY = 30.0
#: A firing this early still counts for the coming tick (beat's and the worker's clocks differ
#: a little); far below one minute, the shortest cron period.
CLOCK_SKEW = timedelta(seconds=10)


def beat_name(schedule_id: Any) -> str:
    """The ``PeriodicTask`` name of a schedule (unique, so re-installing never duplicates)."""
    return f"asyncqueue-schedule-{schedule_id}"


def check_cron(expression: Any, zone_name: Any, *, cron_field: str = "cron") -> cron.Cron:
    """The parsed expression, after checking it and the time zone; raises
    :class:`InvalidScheduleInput` naming ``cron_field`` and/or ``timezone``."""
    problems: dict[str, str] = {}
    parsed = None
    try:
        parsed = cron.parse(expression)
    except cron.InvalidCron as exc:
        problems[cron_field] = exc.message
    try:
        cron.zone(zone_name)
    except cron.InvalidCron as exc:
        problems["timezone"] = exc.message
    if problems or parsed is None:
        raise InvalidScheduleInput(problems)
    return parsed


def _check_template(team: Team, template: dict[str, Any], prefix: str) -> None:
    """The template makes a task: the shared input rules and the team's vault references
    (:class:`InvalidScheduleInput` / ``InvalidTokenReference`` with fields under ``prefix``)."""
    spec = spec_of_body(template)
    try:
        validators.check_queue_name(spec.queue)
    except validators.InvalidInput as exc:
        raise InvalidScheduleInput({f"{prefix}queue": exc.message}) from None
    try:
        vault.check_references(team, spec.headers)
    except InvalidFields as exc:
        raise type(exc)({f"{prefix}{name}": text for name, text in exc.fields.items()}) from None


def create_schedule(
    team: Team,
    expression: str,
    zone_name: str,
    template: dict[str, Any],
    *,
    paused: bool = False,
    sandbox: bool = False,
    field_prefix: str = "task.",
    now: datetime | None = None,
) -> Schedule:
    """A new schedule of ``team`` → its beat rows (enabled unless ``paused``) and the schedule.

    ``template`` is a create body already validated as ``POST /v1/tasks`` validates one
    (camelCase, aliases resolved, JSON values only). Raises :class:`InvalidScheduleInput`
    (``cron``, ``timezone``) or ``InvalidTokenReference`` (``<field_prefix>headers.<name>``).
    A ``sandbox`` schedule (created with a test key) creates sandbox tasks. Raises
    :class:`ScheduleLimitReached` when the team has ``MAX_SCHEDULES_PER_TEAM`` already.
    """
    parsed = check_cron(expression, zone_name)
    _check_template(team, template, field_prefix)
    now = now or timezone.now()
    with transaction.atomic():  # the beat rows and the schedule exist together or not at all
        _check_room(team)
        crontab = CrontabSchedule.objects.create(timezone=zone_name, **_crontab_fields(parsed))
        schedule = Schedule(team=team, task_template=template, sandbox=sandbox, active_since=now)
        schedule.periodic_task = PeriodicTask.objects.create(
            name=beat_name(schedule.id),
            task=TICK_TASK,
            crontab=crontab,
            kwargs=json.dumps({"schedule_id": str(schedule.id)}),
            enabled=not paused,
            description=f"AsyncQueue schedule of team {team.name}",
        )
        schedule.save(force_insert=True)
    logger.info("Schedule %s created for team %s (%s)", schedule.pk, team.pk, parsed.expression)
    return get_schedule(team, schedule.pk)


def _check_room(team: Team) -> None:
    """Inside the creating transaction: the team's row is locked (on PostgreSQL; SQLite in
    ``IMMEDIATE`` transaction mode serialises writers anyway), so concurrent creates of one
    team are counted one after another and the limit is never overshot."""
    Team.objects.select_for_update().filter(pk=team.pk).values_list("pk").first()
    limit = app_settings.MAX_SCHEDULES_PER_TEAM
    count = Schedule.objects.filter(team=team).count()
    if count >= limit:
        raise ScheduleLimitReached(
            f"The team has {count} schedules, the most it may have "
            f"(MAX_SCHEDULES_PER_TEAM = {limit}); delete one first"
        )


def _crontab_fields(parsed: cron.Cron) -> dict[str, str]:
    return {
        "minute": parsed.minute,
        "hour": parsed.hour,
        "day_of_month": parsed.day_of_month,
        "month_of_year": parsed.month,
        "day_of_week": parsed.day_of_week,
    }


def list_schedules(team: Team) -> Any:
    """The team's schedules, newest first, with their beat rows."""
    return Schedule.objects.for_team(team).with_beat().order_by("-created_at", "-id")


def get_schedule(team: Team, schedule_id: Any) -> Schedule:
    """The schedule ``schedule_id`` of ``team``; :class:`ScheduleNotFound` otherwise (another
    team's schedule is not found either)."""
    try:
        pk = UUID(str(schedule_id))
    except ValueError:
        raise ScheduleNotFound() from None
    schedule: Schedule | None = list_schedules(team).filter(pk=pk).first()
    if schedule is None:
        raise ScheduleNotFound()
    return schedule


def update_schedule(
    team: Team,
    schedule_id: Any,
    *,
    expression: str | None = None,
    zone_name: str | None = None,
    template: dict[str, Any] | None = None,
    paused: bool | None = None,
    now: datetime | None = None,
) -> Schedule:
    """Change what is given (``None`` keeps it): the cron, time zone, template (replaced as a
    whole), paused. A new cron or time zone, or a resume, counts ticks from ``now`` on: ticks
    that fell before it (or while paused) never run. Raises :class:`ScheduleNotFound`,
    :class:`InvalidScheduleInput` or ``InvalidTokenReference``."""
    now = now or timezone.now()
    current = get_schedule(team, schedule_id)
    crontab = current.periodic_task.crontab
    parsed = None
    if expression is not None or zone_name is not None:
        if crontab is None and expression is None:  # given another kind of schedule in the admin
            raise InvalidScheduleInput({"cron": "This schedule has no cron now: give one."})
        zone_name = zone_name or (str(crontab.timezone) if crontab is not None else "UTC")
        parsed = check_cron(expression or cron_text(crontab), zone_name)
    if template is not None:
        _check_template(team, template, "task.")
    with transaction.atomic():  # row locks: a concurrent pause or delete waits for this
        schedule = Schedule.objects.select_for_update().filter(pk=current.pk).first()
        if schedule is None:
            raise ScheduleNotFound()
        task = PeriodicTask.objects.select_for_update().get(pk=schedule.periodic_task_id)
        fields: dict[str, Any] = {}
        if parsed is not None:
            if crontab is None:
                crontab = CrontabSchedule(timezone=zone_name)
                task.crontab, task.interval, task.solar, task.clocked = crontab, None, None, None
            for name, value in _crontab_fields(parsed).items():
                setattr(crontab, name, value)
            crontab.timezone = zone_name
            crontab.save()
            task.crontab = crontab
            task.save()  # its signal tells beat to reload
            fields["active_since"] = now
        if template is not None:
            fields["task_template"] = template
        if paused is not None and paused == task.enabled:
            task.enabled = not paused
            task.save()  # save(), not update(): its signal tells beat to reload
            if not paused:
                fields["active_since"] = now
        if fields:
            Schedule.objects.filter(pk=schedule.pk).update(**fields)
    return get_schedule(team, current.pk)


def pause_schedule(team: Team, schedule_id: Any, now: datetime | None = None) -> Schedule:
    """→ paused (its ``PeriodicTask`` disabled): no tick that starts after this commits runs
    until it is resumed (one already creating its task finishes). Pausing a paused schedule
    changes nothing. Raises :class:`ScheduleNotFound`."""
    return update_schedule(team, schedule_id, paused=True, now=now)


def resume_schedule(team: Team, schedule_id: Any, now: datetime | None = None) -> Schedule:
    """→ running again from the next tick on (the ticks missed while paused do not run).
    Resuming a running schedule changes nothing. Raises :class:`ScheduleNotFound`."""
    return update_schedule(team, schedule_id, paused=False, now=now)


def delete_schedule(team: Team, schedule_id: Any) -> Schedule:
    """Delete the schedule and its beat rows (beat stops firing it); the tasks it created stay.
    Returns the schedule as it was. Raises :class:`ScheduleNotFound`."""
    schedule = get_schedule(team, schedule_id)
    with transaction.atomic():  # the PeriodicTask's delete cascades to the schedule
        _delete_beat_rows(PeriodicTask.objects.filter(pk=schedule.periodic_task_id).first())
        Schedule.objects.filter(pk=schedule.pk).delete()
    logger.info("Schedule %s of team %s deleted", schedule.pk, team.pk)
    return schedule


def _delete_beat_rows(task: PeriodicTask | None) -> None:
    """Delete a schedule's ``PeriodicTask`` now, and its own crontab
    ``CRONTAB_DROP_DELAY`` seconds later (:func:`drop_unused_crontab`).

    Not both at once: beat's ``DatabaseScheduler`` reads the enabled periodic tasks in one
    query and their crontabs in a second (``prefetch_related``). A crontab deleted between the
    two leaves a listed task without a schedule, and building its entry raises, which stops
    beat, and with it every schedule and sweep. A task deleted alone is harmless there (its
    crontab is still found; its entry fires into :func:`run_schedule`, which finds no
    schedule), and a crontab that no task uses is never read.
    """
    if task is None:
        return
    crontab_id = task.crontab_id
    task.delete()  # delete(), not a queryset delete: its signal tells beat to reload
    if crontab_id is not None:
        engine.publish_on_commit(
            # On Celery's default queue, with beat's own tasks.
            [Message(DROP_CRONTAB_TASK, (str(crontab_id),), "", 5, CRONTAB_DROP_DELAY)]
        )


def drop_unused_crontab(crontab_id: int | str) -> bool:
    """Delete the ``CrontabSchedule`` ``crontab_id`` of a deleted schedule, unless a periodic
    task uses it again. True if it was deleted. (If this never runs, the row stays unused.)"""
    unused = CrontabSchedule.objects.filter(pk=crontab_id).exclude(
        pk__in=PeriodicTask.objects.filter(crontab_id=crontab_id).values("crontab_id")
    )
    return bool(unused.delete()[0])


def cron_text(crontab: CrontabSchedule) -> str:
    """The five-field expression a ``CrontabSchedule`` row holds."""
    return " ".join(
        str(part)
        for part in (
            crontab.minute,
            crontab.hour,
            crontab.day_of_month,
            crontab.month_of_year,
            crontab.day_of_week,
        )
    )


def run_schedule(schedule_id: Any, now: datetime | None = None) -> Task | None:
    """One firing of a schedule by beat: the task created for the tick it stands for, or None.

    None when the schedule is gone (its beat entry is then deleted too: a deleted team's
    schedules go with the team, their beat rows on their next firing) or paused, when there is
    no tick since it became active,
    or when the tick already ran (a second beat, a duplicated message: the guarded UPDATE of
    ``last_tick_at`` matched nothing). A template that no longer makes a task (a vault token
    revoked since) records the tick with ``last_error`` and creates nothing; it is not
    retried, the next tick tries again.
    """
    now = now or timezone.now()
    try:
        schedule = Schedule.objects.with_beat().filter(pk=UUID(str(schedule_id))).first()
    except ValueError:
        return None  # not an id: a PeriodicTask made by hand
    if schedule is None:
        # Gone with its team (a cascade that cannot reach beat's rows): its entry goes too.
        with transaction.atomic():
            _delete_beat_rows(PeriodicTask.objects.filter(name=beat_name(schedule_id)).first())
        return None
    if not schedule.periodic_task.enabled:
        return None
    crontab = schedule.periodic_task.crontab
    if crontab is None:
        return None  # an operator gave the PeriodicTask another kind of schedule
    try:
        tick = cron.previous_tick(
            cron.parse(cron_text(crontab)), cron.zone(str(crontab.timezone)), now + CLOCK_SKEW
        )
    except cron.InvalidCron as exc:  # edited in the admin into something we cannot read
        _record(schedule, None, now, error=f"Invalid cron or time zone: {exc.message}")
        return None
    if tick is None or tick < schedule.active_since:
        return None
    try:
        with transaction.atomic():  # the tick is taken only together with its task
            if not _take_tick(schedule, tick, now):
                return None
            spec = spec_of_body(schedule.task_template)
            trace = tracing.current_headers()  # the tick's span, when OpenTelemetry records one
            spec.traceparent, spec.tracestate = (
                trace.get("traceparent", ""),
                trace.get("tracestate", ""),
            )
            created = lifecycle.create_task(schedule.team, spec, sandbox=schedule.sandbox)
            Schedule.objects.filter(pk=schedule.pk).update(last_task_id=created.task.pk)
    except (InvalidFields, validators.InvalidInput) as exc:
        message = getattr(exc, "message", str(exc))
        logger.warning("Schedule %s: tick %s created no task: %s", schedule.pk, tick, message)
        _record(schedule, tick, now, error=message)
        return None
    logger.info("Schedule %s: tick %s created task %s", schedule.pk, tick, created.task.pk)
    return created.task


def _take_tick(schedule: Schedule, tick: datetime, now: datetime) -> bool:
    """Move ``last_tick_at`` forward to ``tick``: True for the one caller that does.

    The tick key. On PostgreSQL a concurrent UPDATE of the same row waits for this one to
    commit and then re-checks the condition, so it sees the tick taken (0 rows)."""
    moved = (
        Schedule.objects.filter(pk=schedule.pk)
        .filter(Q(last_tick_at__isnull=True) | Q(last_tick_at__lt=tick))
        .update(last_tick_at=tick, last_run_at=now, last_error="")
    )
    return moved == 1


def _record(schedule: Schedule, tick: datetime | None, now: datetime, *, error: str) -> None:
    """A tick that created no task: taken all the same (not retried), with why."""
    rows = Schedule.objects.filter(pk=schedule.pk)
    if tick is None:
        rows.update(last_error=error[: validators.MAX_ERROR_LENGTH])
        return
    rows.filter(Q(last_tick_at__isnull=True) | Q(last_tick_at__lt=tick)).update(
        last_tick_at=tick, last_run_at=now, last_error=error[: validators.MAX_ERROR_LENGTH]
    )


def next_run(schedule: Schedule, now: datetime) -> datetime | None:
    """When the schedule runs next (UTC), or None when paused or its cron cannot be read."""
    task = schedule.periodic_task
    if not task.enabled or task.crontab is None:
        return None
    try:
        parsed = cron.parse(cron_text(task.crontab))
        zone = cron.zone(str(task.crontab.timezone))
    except cron.InvalidCron:
        return None
    after = max(now, schedule.last_tick_at or now)
    return cron.next_tick(parsed, zone, after)
