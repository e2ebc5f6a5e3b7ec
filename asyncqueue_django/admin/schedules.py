"""The schedules page: each schedule with its cron, time zone, next and last run, and a link to
its django-celery-beat ``PeriodicTask`` (where the cron, time zone and enabled are edited: the
schedule reads them from there). Pause, resume and delete go through ``services``; the task
template is shown with its secret-looking headers redacted. Schedules are created over the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from asyncqueue_django import representation, services
from asyncqueue_django.admin.base import OperateMixin, pretty_json, run_action
from asyncqueue_django.models import Schedule

if TYPE_CHECKING:
    ScheduleAdminBase = admin.ModelAdmin[Schedule]
else:
    ScheduleAdminBase = admin.ModelAdmin


@admin.register(Schedule)
class ScheduleAdmin(OperateMixin, ScheduleAdminBase):
    list_display = (
        "id",
        "team",
        "cron",
        "time_zone",
        "paused",
        "next_run",
        "last_run_at",
        "last_task",
    )
    list_filter = ("periodic_task__enabled", "sandbox", "team")
    list_select_related = ("team", "periodic_task", "periodic_task__crontab")
    search_fields = ("=id", "team__name")
    fields = (
        "id",
        "team",
        "cron",
        "time_zone",
        "paused",
        "beat_entry",
        "template",
        "sandbox",
        "next_run",
        "last_run_at",
        "last_task",
        "last_error",
        "active_since",
        "created_at",
    )
    readonly_fields = fields
    actions = ["pause_schedules", "resume_schedules", "delete_schedules"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        return (
            super()
            .get_queryset(request)
            .select_related("team", "periodic_task", "periodic_task__crontab")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created over the API, where the template is validated

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the cron and time zone are edited on the beat entry

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the "delete" action removes the beat rows too

    def _data(self, obj: Schedule) -> dict[str, Any]:
        return representation.schedule_data(obj, timezone.now())

    @admin.display(description="cron")
    def cron(self, obj: Schedule) -> Any:
        return self._data(obj)["cron"]

    @admin.display(description="time zone")
    def time_zone(self, obj: Schedule) -> Any:
        return self._data(obj)["timezone"]

    @admin.display(description="paused", boolean=True)
    def paused(self, obj: Schedule) -> bool:
        return not obj.periodic_task.enabled

    @admin.display(description="next run")
    def next_run(self, obj: Schedule) -> Any:
        return self._data(obj)["nextRunAt"] or "-"

    @admin.display(description="task template")
    def template(self, obj: Schedule) -> str:
        return pretty_json(self._data(obj)["task"])

    @admin.display(description="beat entry")
    def beat_entry(self, obj: Schedule) -> str:
        url = reverse("admin:django_celery_beat_periodictask_change", args=[obj.periodic_task_id])
        return format_html('<a href="{}">{}</a>', url, obj.periodic_task.name)

    @admin.display(description="last task")
    def last_task(self, obj: Schedule) -> str:
        if obj.last_task_id is None:
            return "-"
        url = reverse("admin:asyncqueue_task_change", args=[obj.last_task_id])
        return format_html('<a href="{}">{}</a>', url, obj.last_task_id)

    def _each(
        self, request: HttpRequest, queryset: QuerySet[Schedule], call: Any, verb: str
    ) -> None:
        schedules = list(queryset.select_related("team"))
        run_action(
            self, request, schedules, lambda s: call(s.team, s.pk), verb=verb, noun="schedule"
        )

    @admin.action(description="Pause selected schedules", permissions=["operate"])
    def pause_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, services.pause_schedule, "Paused")

    @admin.action(description="Resume selected schedules", permissions=["operate"])
    def resume_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, services.resume_schedule, "Resumed")

    @admin.action(
        description="Delete selected schedules and their beat entries", permissions=["operate"]
    )
    def delete_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, services.delete_schedule, "Deleted")
