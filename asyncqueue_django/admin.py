"""The Django admin as the operators' dashboard: tasks, failed and timed-out tasks, teams and
API keys.

Read-mostly. Every page is read-only; every write is an ``@admin.action`` that calls
``services.py`` (the one write path) and reports with ``message_user``. The only form that
writes is "Add API key", and it too issues the key through ``services.create_api_key``.
Secrets never appear: not the signal token's digest, not webhook secrets, not secret-looking
request headers; a new API key is shown exactly once, on the page that answers its creation.

Actions need the model's "change" permission (``has_operate_permission``): a staff user who
may only view sees the pages but not the actions. Lists cost a fixed number of queries per page
(``list_select_related``, annotations, large columns deferred); the task list never counts the
whole table (``show_full_result_count = False``).
"""

from __future__ import annotations

import contextlib
import json
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_permission_codename
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from asyncqueue_django import services, states
from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import AsyncQueueError
from asyncqueue_django.models import (
    ApiKey,
    Attempt,
    DeadTask,
    Task,
    Team,
    WebhookDelivery,
)
from asyncqueue_django.sanitize import check_json_value, redact_headers
from asyncqueue_django.states import TaskStatus

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

#: How many refusals one message names (the rest are counted).
MAX_REFUSALS_LISTED = 20

#: Task columns the list pages never load: request and response bodies can be large.
TASK_LIST_DEFERRED = ("headers", "payload", "body", "result", "early_signal_result", "metadata")


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


class OperateMixin:
    """Actions are gated on the model's real "change" permission, while the forms stay
    read-only (``has_change_permission`` is False so no page offers a Save button)."""

    model: Any

    def has_operate_permission(self, request: HttpRequest) -> bool:
        opts = self.model._meta.concrete_model._meta
        codename = get_permission_codename("change", opts)
        return request.user.has_perm(f"{opts.app_label}.{codename}")


def _report(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    done: int,
    verb: str,
    noun: str,
    refused: list[str],
) -> None:
    """One success message for what was done, one warning naming what the service refused."""
    if done or not refused:
        modeladmin.message_user(request, f"{verb} {done} {noun}(s).", messages.SUCCESS)
    if refused:
        listed = "; ".join(refused[:MAX_REFUSALS_LISTED])
        more = len(refused) - MAX_REFUSALS_LISTED
        suffix = f"; and {more} more" if more > 0 else ""
        modeladmin.message_user(
            request, f"Refused {len(refused)} {noun}(s): {listed}{suffix}", messages.WARNING
        )


def _pretty_json(value: Any) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', text)


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


class AttemptInline(AttemptInlineBase):
    """Callback attempts of the task, oldest first (read-only)."""

    model = Attempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "duration_ms", "status_code", "outcome", "error", "worker")
    readonly_fields = fields
    ordering = ("number",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
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
    ordering = ("created_at", "id")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class WaitForSignalFilter(admin.BooleanFieldListFilter):
    """The boolean filter, titled with the API's field name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "waitForSignal"


class TaskChangeList(ChangeList):
    """The task list without its large columns (a page of 100 tasks with 1 MB payloads each
    would otherwise load 100 MB to show a few short fields)."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        qs = super().get_queryset(request, exclude_parameters)
        return qs.defer(*TASK_LIST_DEFERRED)


class ResolveWaitingForm(forms.Form):
    """What the operator's signal carries: a result (JSON) and, to fail a task, an error."""

    result = forms.CharField(
        label="Result (JSON)",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "spellcheck": "false"}),
        help_text="Any JSON value, stored as the task's result. Leave empty for null.",
    )
    error = forms.CharField(
        label="Error",
        required=False,
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Why the task failed, stored as the task's error.",
    )

    def __init__(self, status: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status = status
        if status == TaskStatus.FAILED:
            self.fields["error"].required = True
        else:
            del self.fields["error"]

    def clean_result(self) -> Any:
        text = self.cleaned_data["result"].strip()
        if not text:
            return None
        try:
            value = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise forms.ValidationError("JSON is nested too deeply.") from None
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        try:
            check_json_value(value)
        except (ValueError, RecursionError) as exc:
            raise forms.ValidationError(str(exc) or "JSON is nested too deeply.") from None
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > app_settings.MAX_BODY_BYTES:
            raise forms.ValidationError(
                f"Must be at most {app_settings.MAX_BODY_BYTES} bytes as JSON."
            )
        return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (numbers must be finite)")


#: The change page of a task, section by section (every field is read-only).
TASK_SECTIONS: tuple[tuple[str | None, tuple[str, ...]], ...] = (
    (
        None,
        (
            "id",
            "team",
            "status",
            "queue",
            "priority",
            "created_at",
            "updated_at",
            "started_at",
            "completed_at",
        ),
    ),
    ("Call", ("target_url", "method", "headers_redacted", "payload_json", "body", "timeout")),
    (
        "Retries",
        (
            "max_retries",
            "retry_backoff",
            "retry_count",
            "attempt_count",
            "delay_until",
            "next_attempt_at",
            "dispatched_at",
        ),
    ),
    ("Worker lease", ("leased_by", "claimed_at", "lease_expires_at")),
    (
        "Wait for signal",
        (
            "wait_for_signal",
            "max_wait_time",
            "wait_deadline",
            "signal_received_at",
            "early_signal_status",
            "early_signal_result_json",
            "early_signal_error",
        ),
    ),
    ("Outcome", ("result_json", "error", "on_complete_url")),
    ("Bookkeeping", ("metadata_json", "idempotency_key", "idempotency_expires_at")),
)


@admin.register(Task)
class TaskAdmin(OperateMixin, TaskAdminBase):
    list_display = (
        "id",
        "status",
        "queue",
        "team",
        "target_host",
        "attempts",
        "created",
        "finished_at",
    )
    list_filter: ClassVar[tuple[Any, ...]] = (
        "status",
        "queue",
        "team",
        ("wait_for_signal", WaitForSignalFilter),
        "created_at",
    )
    search_fields = ("=id", "target_url", "=idempotency_key", "metadata")
    search_help_text = (
        "A task id (exact), part of a target URL, an Idempotency-Key (exact), or text in the "
        "metadata."
    )
    list_select_related = ("team",)
    ordering = ("-created_at", "-id")
    inlines = [AttemptInline, WebhookDeliveryInline]
    actions = [
        "cancel_tasks",
        "retry_tasks",
        "resend_webhooks",
        "complete_waiting_tasks",
        "fail_waiting_tasks",
    ]
    show_full_result_count = False
    # Everything but the signal token's digest and the idempotency fingerprint (both digests
    # of secrets or requests, of no use to a person). Headers are shown redacted.
    fieldsets = tuple((title, {"fields": names}) for title, names in TASK_SECTIONS)
    #: Model fields the change page deliberately leaves out.
    hidden_fields = frozenset({"signal_token_digest", "idempotency_fingerprint"})
    #: Model fields shown through a display method (formatted or redacted).
    displayed_as = {
        "headers": "headers_redacted",
        "payload": "payload_json",
        "result": "result_json",
        "early_signal_result": "early_signal_result_json",
        "metadata": "metadata_json",
    }

    def get_readonly_fields(self, request: HttpRequest, obj: Task | None = None) -> tuple[str, ...]:
        return tuple(name for _, names in TASK_SECTIONS for name in names)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        return super().get_queryset(request).select_related("team")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TaskChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Task], search_term: str
    ) -> tuple[QuerySet[Task], bool]:
        """One term, matched as a whole: the id (exact), the target URL (contains), the
        Idempotency-Key (exact) or the metadata as JSON text (contains; PostgreSQL and
        SQLite alike)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        match = (
            Q(target_url__icontains=term) | Q(idempotency_key=term) | Q(metadata__icontains=term)
        )
        with contextlib.suppress(ValueError):  # not an id: match the other fields only
            match |= Q(pk=uuid.UUID(term))
        return queryset.filter(match), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # finished tasks leave through asyncqueue_prune, never one by one

    # -- columns and read-only fields --------------------------------------------------------

    @admin.display(description="target host", ordering="target_url")
    def target_host(self, obj: Task) -> str:
        try:
            host = urlsplit(obj.target_url).hostname
        except ValueError:
            host = None
        return host or obj.target_url[:60]

    @admin.display(description="attempts", ordering="attempt_count")
    def attempts(self, obj: Task) -> int:
        return obj.attempt_count

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Task) -> Any:
        return obj.created_at

    @admin.display(description="finished", ordering="completed_at")
    def finished_at(self, obj: Task) -> Any:
        return obj.completed_at

    @admin.display(description="headers")
    def headers_redacted(self, obj: Task) -> str:
        return _pretty_json(redact_headers(obj.headers or {}))

    @admin.display(description="payload")
    def payload_json(self, obj: Task) -> str:
        return _pretty_json(obj.payload)

    @admin.display(description="result")
    def result_json(self, obj: Task) -> str:
        return _pretty_json(obj.result)

    @admin.display(description="early signal result")
    def early_signal_result_json(self, obj: Task) -> str:
        return _pretty_json(obj.early_signal_result)

    @admin.display(description="metadata")
    def metadata_json(self, obj: Task) -> str:
        return _pretty_json(obj.metadata)

    # -- actions ---------------------------------------------------------------------------

    def _apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[Task],
        verb: str,
        service: Callable[[Team, Any], Any],
    ) -> None:
        """Call ``service(team, task_id)`` for each selected task; each call is its own
        transaction, so one refusal does not undo the others."""
        done, refused = 0, []
        for task in _selected(queryset):
            try:
                service(task.team, task.pk)
                done += 1
            except AsyncQueueError as exc:
                refused.append(f"{task.pk}: {exc.message}")
        _report(self, request, done, verb, "task", refused)

    @admin.action(description="Cancel selected tasks", permissions=["operate"])
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._apply(request, queryset, "Cancelled", services.cancel_task)

    @admin.action(description="Retry selected failed/timed-out tasks now", permissions=["operate"])
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._apply(request, queryset, "Re-queued", services.retry_task)

    @admin.action(
        description="Re-send the latest webhook event of selected tasks", permissions=["operate"]
    )
    def resend_webhooks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._apply(request, queryset, "Re-sent the webhook of", services.resend_latest_webhook)

    @admin.action(
        description="Complete selected waiting tasks with a result…", permissions=["operate"]
    )
    def complete_waiting_tasks(
        self, request: HttpRequest, queryset: QuerySet[Task]
    ) -> TemplateResponse | None:
        return self._resolve_waiting(request, queryset, TaskStatus.COMPLETED)

    @admin.action(description="Fail selected waiting tasks with an error…", permissions=["operate"])
    def fail_waiting_tasks(
        self, request: HttpRequest, queryset: QuerySet[Task]
    ) -> TemplateResponse | None:
        return self._resolve_waiting(request, queryset, TaskStatus.FAILED)

    def _resolve_waiting(
        self, request: HttpRequest, queryset: QuerySet[Task], status: TaskStatus
    ) -> TemplateResponse | None:
        """The operator's signal, in two steps: a page asks for the result (and the error, to
        fail), then ``services.resolve_waiting_task`` applies it to each selected task: the
        same guarded transition and terminal event as a signal sent with the token."""
        tasks = list(_selected(queryset))
        if not any(task.status == TaskStatus.WAITING for task in tasks):
            self.message_user(
                request, "None of the selected tasks is waiting for a signal.", messages.WARNING
            )
            return None
        if "apply" in request.POST:
            form = ResolveWaitingForm(status, request.POST)
            if form.is_valid():
                done, refused = 0, []
                for task in tasks:
                    try:
                        services.resolve_waiting_task(
                            task.team,
                            task.pk,
                            status,
                            result=form.cleaned_data["result"],
                            error=form.cleaned_data.get("error", ""),
                        )
                        done += 1
                    except AsyncQueueError as exc:
                        refused.append(f"{task.pk}: {exc.message}")
                verb = "Completed" if status == TaskStatus.COMPLETED else "Failed"
                _report(self, request, done, verb, "waiting task", refused)
                return None
        else:
            form = ResolveWaitingForm(status)
        verb = "Complete" if status == TaskStatus.COMPLETED else "Fail"
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb} waiting tasks",
            "verb": verb,
            "opts": self.opts,
            "form": form,
            "tasks": tasks,
            "waiting": [t for t in tasks if t.status == TaskStatus.WAITING],
            "not_waiting": [t for t in tasks if t.status != TaskStatus.WAITING],
            "action": request.POST.get("action", ""),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/asyncqueue/task/resolve_waiting.html", context, status=200
        )


def _selected(queryset: QuerySet[Task]) -> Iterable[Task]:
    """The selected tasks with their teams, in one query; only what the actions read."""
    return queryset.select_related("team").only(
        "pk", "status", "team__id", "team__name", "target_url"
    )


class DeadStatusFilter(admin.SimpleListFilter):
    """Failed or timed out (the statuses ``retry`` accepts)."""

    title = "status"
    parameter_name = "status__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(s.value, str(s.label)) for s in (TaskStatus.FAILED, TaskStatus.TIMEOUT)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in states.RETRYABLE:
            return queryset.filter(status=self.value())
        return queryset


@admin.register(DeadTask)
class DeadTaskAdmin(TaskAdmin):
    """Failed and timed-out tasks, for reprocessing in bulk ("Retry" moves each back to
    ``pending`` in a new attempt cycle, and out of this list)."""

    list_display = (
        "id",
        "status",
        "queue",
        "team",
        "target_host",
        "attempts",
        "short_error",
        "finished_at",
    )
    list_filter = (DeadStatusFilter, "queue", "team", "completed_at", "created_at")
    ordering = ("-completed_at", "-id")
    actions = ["retry_tasks", "resend_webhooks"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        return super().get_queryset(request).filter(status__in=list(states.RETRYABLE))

    @admin.display(description="error")
    def short_error(self, obj: Task) -> str:
        return obj.error if len(obj.error) <= 80 else obj.error[:79] + "…"


# --------------------------------------------------------------------------------------------
# Teams
# --------------------------------------------------------------------------------------------


class ApiKeyInline(ApiKeyInlineBase):
    """The team's keys (prefixes only; add and revoke them on the API keys page)."""

    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("prefix", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(OperateMixin, TeamAdminBase):
    list_display = ("name", "active_keys", "webhook_secret_status", "created_at")
    search_fields = ("name",)
    inlines = [ApiKeyInline]
    actions = ["rotate_webhook_secrets"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                active_key_count=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True))
            )
        )

    def get_fields(self, request: HttpRequest, obj: Team | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("name",)
        return ("name", "webhook_secret_status", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Team | None = None) -> tuple[str, ...]:
        return () if obj is None else self.get_fields(request, obj)

    def get_inlines(self, request: HttpRequest, obj: Team | None) -> list[Any]:
        return [] if obj is None else list(self.inlines)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting a team would delete its tasks

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        """A new team, through the service (it gets a fresh webhook secret)."""
        team, _ = services.get_or_create_team(form.cleaned_data["name"])
        obj.pk = team.pk
        obj.created_at = team.created_at

    @admin.display(description="active API keys", ordering="active_key_count")
    def active_keys(self, obj: Team) -> int:
        return int(getattr(obj, "active_key_count", 0))

    @admin.display(description="webhook secret")
    def webhook_secret_status(self, obj: Team) -> str:
        """Whether a secret is set and until when the previous one signs: never the secret."""
        current = "set" if obj.webhook_secret else "not set"
        expires = obj.previous_secret_expires_at
        if obj.previous_webhook_secret and expires is not None and expires > timezone.now():
            until = timezone.localtime(expires).strftime("%Y-%m-%d %H:%M:%S %Z")
            return f"{current}; the previous secret also signs until {until}"
        return current

    @admin.action(description="Rotate webhook secret", permissions=["operate"])
    def rotate_webhook_secrets(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        """A new secret for each selected team (``services.rotate_webhook_secret``); the
        previous one keeps signing for ``WEBHOOK_SECRET_OVERLAP`` seconds. The new secret is
        not shown: ``manage.py asyncqueue_webhook_secret --team NAME`` prints it."""
        names = []
        for team in queryset.only("pk", "name"):
            services.rotate_webhook_secret(team)
            names.append(team.name)
        overlap = app_settings.WEBHOOK_SECRET_OVERLAP
        keeps = (
            f"The previous secret keeps signing for {overlap} s."
            if overlap
            else "The previous secret no longer signs (WEBHOOK_SECRET_OVERLAP is 0)."
        )
        self.message_user(
            request,
            f"Rotated the webhook secret of {len(names)} team(s): {', '.join(names)}. {keeps} "
            "Print a new secret with: manage.py asyncqueue_webhook_secret --team NAME",
            messages.SUCCESS,
        )


# --------------------------------------------------------------------------------------------
# API keys
# --------------------------------------------------------------------------------------------


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(OperateMixin, ApiKeyAdminBase):
    """Keys are issued by the add form (team + name) through ``services.create_api_key``; the
    page that answers shows the raw key once, and nothing ever shows it again (only its
    digest is stored). Revoke with the action."""

    list_display = ("prefix", "team", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = (RevokedFilter, "team")
    list_select_related = ("team",)
    search_fields = ("prefix", "name", "team__name")
    actions = ["revoke_keys"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The raw key travels from save_model to response_add of the same request, and no
        # further: not in the session, messages or logs.
        self._issued: weakref.WeakKeyDictionary[HttpRequest, str] = weakref.WeakKeyDictionary()

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        return super().get_queryset(request).select_related("team")

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("team", "name")
        return ("team", "name", "prefix", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> tuple[str, ...]:
        return () if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the row keeps the history of who used what

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        issued = services.create_api_key(form.cleaned_data["team"], form.cleaned_data["name"])
        key = issued.api_key
        obj.pk, obj.prefix, obj.digest, obj.created_at = (
            key.pk,
            key.prefix,
            key.digest,
            key.created_at,
        )
        self._issued[request] = issued.raw_key

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        """The one page that shows the raw key. It is the answer to the POST (no redirect, so
        the key is never stored in the session), and it is not cached."""
        raw_key = self._issued.pop(request, None)
        if raw_key is None:  # pragma: no cover - save_model always issues one
            return super().response_add(request, obj, post_url_continue)
        info = (self.opts.app_label, self.opts.model_name)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "opts": self.opts,
            "api_key": obj,
            "raw_key": raw_key,
            "change_url": reverse(f"admin:{info[0]}_{info[1]}_change", args=[obj.pk]),
            "changelist_url": reverse(f"admin:{info[0]}_{info[1]}_changelist"),
        }
        request.current_app = self.admin_site.name
        response = TemplateResponse(request, "admin/asyncqueue/apikey/issued.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected keys", permissions=["operate"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = already = 0
        for key in queryset.select_related(None).only("pk"):
            if services.revoke_api_key(key):
                revoked += 1
            else:
                already += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
        if already:
            self.message_user(request, f"{already} key(s) were already revoked.", messages.WARNING)
