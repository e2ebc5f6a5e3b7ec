"""A read-mostly admin. Writes go through actions that call ``services.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from asyncqueue_django import services
from asyncqueue_django.exceptions import AsyncQueueError
from asyncqueue_django.models import ApiKey, Attempt, Task, Team, WebhookDelivery

if TYPE_CHECKING:
    # The stubs make these generic; at run time Django's classes take no type arguments.
    AttemptInlineBase = admin.TabularInline[Attempt, Task]
    WebhookDeliveryInlineBase = admin.TabularInline[WebhookDelivery, Task]
    ApiKeyInlineBase = admin.TabularInline[ApiKey, Team]
    TaskAdminBase = admin.ModelAdmin[Task]
    TeamAdminBase = admin.ModelAdmin[Team]
    ApiKeyAdminBase = admin.ModelAdmin[ApiKey]
else:
    AttemptInlineBase = ApiKeyInlineBase = WebhookDeliveryInlineBase = admin.TabularInline
    TaskAdminBase = TeamAdminBase = ApiKeyAdminBase = admin.ModelAdmin


class AttemptInline(AttemptInlineBase):
    model = Attempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "duration_ms", "status_code", "outcome", "error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class WebhookDeliveryInline(WebhookDeliveryInlineBase):
    """The task's onComplete events (read-only; re-send with the task action)."""

    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = (
        "id",
        "event",
        "status",
        "attempt_count",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
        "next_attempt_at",
    )
    readonly_fields = fields
    ordering = ("created_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Task)
class TaskAdmin(TaskAdminBase):
    list_display = (
        "id",
        "status",
        "queue",
        "team",
        "target_url",
        "attempt_count",
        "created_at",
        "completed_at",
    )
    list_filter = ("status", "queue", "wait_for_signal", "team", "created_at")
    search_fields = ("=id", "target_url", "=idempotency_key")
    list_select_related = ("team",)
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    inlines = [AttemptInline, WebhookDeliveryInline]
    actions = ["cancel_tasks", "retry_tasks", "resend_webhooks"]
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Task | None = None) -> list[str]:
        return [f.name for f in Task._meta.fields if f.name != "signal_token_digest"]

    def get_exclude(self, request: HttpRequest, obj: Task | None = None) -> list[str]:
        return ["signal_token_digest"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _apply(self, request: HttpRequest, queryset: QuerySet[Task], verb: str, fn: Any) -> None:
        done, refused = 0, []
        for task in queryset.select_related("team"):
            try:
                fn(task.team, task.pk)
                done += 1
            except AsyncQueueError as exc:
                refused.append(f"{task.pk}: {exc.message}")
        self.message_user(request, f"{verb} {done} task(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, "Refused: " + "; ".join(refused[:20]), messages.WARNING)

    @admin.action(description="Cancel selected tasks")
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._apply(request, queryset, "Cancelled", services.cancel_task)

    @admin.action(description="Retry selected failed/timed-out tasks")
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._apply(request, queryset, "Re-queued", services.retry_task)

    @admin.action(description="Re-send the latest webhook event of selected tasks")
    def resend_webhooks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._apply(request, queryset, "Re-sent the webhook of", services.resend_latest_webhook)


class ApiKeyInline(ApiKeyInlineBase):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("prefix", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(TeamAdminBase):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    inlines = [ApiKeyInline]


@admin.register(ApiKey)
class ApiKeyAdmin(ApiKeyAdminBase):
    list_display = ("prefix", "name", "team", "created_at", "last_used_at", "revoked_at")
    list_filter = ("team",)
    list_select_related = ("team",)
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_keys"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(services.revoke_api_key(key) for key in queryset)
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
