"""The queues page: pause switches, for every team (the operator's) or for one team (set over
the API), with pause and resume actions through ``services.pause_queue``/``resume_queue``.
"Add" pauses a queue by name (the only way a row is written); open tasks by queue are on the
dashboard and ``asyncqueue_queues list``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.forms.models import construct_instance
from django.http import HttpRequest

from asyncqueue_django import services, validators
from asyncqueue_django.admin.base import OperateMixin, run_action
from asyncqueue_django.models import Queue

if TYPE_CHECKING:
    QueueAdminBase = admin.ModelAdmin[Queue]
else:
    QueueAdminBase = admin.ModelAdmin


class PauseQueueForm(forms.ModelForm):  # type: ignore[type-arg]
    """ "Add queue": the name checked by the same rule as a task's ``queue``; the row is
    written by ``services.pause_queue`` (a queue paused twice is still one row)."""

    class Meta:
        model = Queue
        fields = ("name", "team")

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"])
        try:
            return validators.check_queue_name(name)
        except validators.InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None

    def _post_clean(self) -> None:
        # Only the fields onto the instance: the row's uniqueness is the service's business
        # (pausing a queue that has a row already pauses that row again).
        self.instance = construct_instance(self, self.instance, self._meta.fields)


@admin.register(Queue)
class QueueAdmin(OperateMixin, QueueAdminBase):
    list_display = ("name", "scope", "paused", "paused_at", "updated_at")
    list_filter = ("paused", "team")
    list_select_related = ("team",)
    search_fields = ("name", "team__name")
    form = PauseQueueForm
    fields = ("name", "team")
    actions = ["pause_queues", "resume_queues"]

    @admin.display(description="for")
    def scope(self, obj: Queue) -> str:
        return "every team" if obj.team is None else str(obj.team)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # pause and resume are actions

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # resume instead (the row stays as the queue's record)

    def save_model(self, request: HttpRequest, obj: Queue, form: Any, change: bool) -> None:
        """ "Add queue" pauses it (for the team chosen, else for every team)."""
        services.pause_queue(obj.team, obj.name)
        saved = Queue.objects.get(team=obj.team, name=obj.name)
        obj.pk, obj.paused, obj.paused_at = saved.pk, saved.paused, saved.paused_at

    @admin.action(description="Pause selected queues", permissions=["operate"])
    def pause_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        run_action(
            self,
            request,
            queryset.select_related("team"),
            lambda q: services.pause_queue(q.team, q.name),
            verb="Paused",
            noun="queue",
        )

    @admin.action(description="Resume selected queues", permissions=["operate"])
    def resume_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        run_action(
            self,
            request,
            queryset.select_related("team"),
            lambda q: services.resume_queue(q.team, q.name),
            verb="Resumed",
            noun="queue",
        )
