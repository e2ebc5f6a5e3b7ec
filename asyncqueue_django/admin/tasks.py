"""The task pages: all tasks, and failed/timed-out tasks for reprocessing in bulk."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from asyncqueue_django import services, states, validators
from asyncqueue_django.admin.base import OperateMixin, ReadOnlyInline, pretty_json, run_action
from asyncqueue_django.jsonvalue import redact_headers
from asyncqueue_django.models import Attempt, DeadTask, Task, Team, WebhookDelivery
from asyncqueue_django.states import TaskStatus

if TYPE_CHECKING:
    TaskAdminBase = admin.ModelAdmin[Task]
else:
    TaskAdminBase = admin.ModelAdmin

#: Task columns the list pages never load: request and response bodies can be large.
TASK_LIST_DEFERRED = ("headers", "payload", "body", "result", "early_signal_result", "metadata")


class AttemptInline(ReadOnlyInline):
    """Callback attempts of the task, oldest first (read-only)."""

    model = Attempt
    fields = ("number", "started", "duration_ms", "status_code", "outcome", "error", "worker")
    ordering = ("number",)

    @admin.display(description="started at")
    def started(self, obj: Attempt) -> str:
        return seconds(obj.started_at)


class WebhookDeliveryInline(ReadOnlyInline):
    """The task's onComplete events (read-only; re-send with the task action)."""

    model = WebhookDelivery
    fields = (
        "id",
        "event",
        "status",
        "attempt_count",
        "last_status_code",
        "last_error",
        "created",
        "delivered",
        "next_attempt",
    )
    ordering = ("created_at", "id")

    @admin.display(description="created at")
    def created(self, obj: WebhookDelivery) -> str:
        return seconds(obj.created_at)

    @admin.display(description="delivered at")
    def delivered(self, obj: WebhookDelivery) -> str:
        return seconds(obj.delivered_at)

    @admin.display(description="next attempt at")
    def next_attempt(self, obj: WebhookDelivery) -> str:
        return seconds(obj.next_attempt_at)


class WaitForSignalFilter(admin.BooleanFieldListFilter):
    """The boolean filter, titled with the API's field name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "waitForSignal"


class SandboxFilter(admin.BooleanFieldListFilter):
    """Sandbox tasks (created with a test key) or live ones."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "sandbox (test key)"


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
        max_length=validators.MAX_ERROR_LENGTH,
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
            value = validators.parse_json_text(text)
        except validators.InvalidInput as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.message}") from None
        try:
            return validators.check_signal_result(value)
        except validators.InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_error(self) -> str:
        try:
            return validators.check_signal_error(self.cleaned_data["error"]) or ""
        except validators.InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None


#: The change page of a task, section by section (every field is read-only).
TASK_SECTIONS: tuple[tuple[str | None, tuple[str, ...]], ...] = (
    (
        None,
        (
            "id",
            "team",
            "status",
            "sandbox",
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
    ("Flow control", ("flow_key", "flow_parallelism", "flow_rate", "flow_period")),
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
    (
        "Provider polling",
        (
            "provider",
            "poll_config_json",
            "poll_count",
            "last_polled_at",
            "last_poll_status_code",
            "last_poll_error",
        ),
    ),
    ("Outcome", ("result_json", "error", "on_complete_url")),
    (
        "Bookkeeping",
        (
            "metadata_json",
            "idempotency_key",
            "idempotency_expires_at",
            "traceparent",
            "tracestate",
        ),
    ),
)

#: Time fields of the change page, shown to the second (Django's default format stops at the
#: minute) through ``<name>_s`` display methods.
TIMESTAMP_FIELDS = (
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "delay_until",
    "next_attempt_at",
    "dispatched_at",
    "claimed_at",
    "lease_expires_at",
    "wait_deadline",
    "signal_received_at",
    "idempotency_expires_at",
    "last_polled_at",
)

#: The actions the task page offers as buttons: (action name, label, statuses it applies to).
PAGE_ACTIONS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("cancel_tasks", "Cancel", frozenset(states.CANCELLABLE)),
    ("retry_tasks", "Retry now", frozenset(states.RETRYABLE)),
    ("complete_waiting_tasks", "Complete…", frozenset(states.RESOLVABLE)),
    ("fail_waiting_tasks", "Fail…", frozenset(states.RESOLVABLE)),
    ("resend_webhooks", "Re-send webhook", frozenset(states.TERMINAL)),
)


def seconds(value: datetime | None) -> str:
    """A time in the current time zone, to the second, with the UTC instant on hover."""
    if value is None:
        return "-"
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.astimezone(UTC).isoformat(),
        local.strftime("%Z (UTC%z)"),
        local.strftime("%Y-%m-%d %H:%M:%S"),
    )


def _shown(name: str) -> str:
    return f"{name}_s" if name in TIMESTAMP_FIELDS else name


def _timestamp_display(name: str) -> Callable[[Any, Task], str]:
    label = str(getattr(Task._meta.get_field(name), "verbose_name", name))

    @admin.display(description=label, ordering=name)
    def show(self: Any, obj: Task) -> str:
        return seconds(getattr(obj, name))

    return show


@admin.register(Task)
class TaskAdmin(OperateMixin, TaskAdminBase):
    list_display: tuple[str, ...] = (
        "short_id",
        "status",
        "queue",
        "team",
        "target",
        "attempts",
        "created",
        "finished_at",
        "sandbox",
    )
    list_display_links = ("short_id",)
    change_form_template = "admin/asyncqueue/task/change_form.html"
    list_filter: ClassVar[tuple[Any, ...]] = (
        "status",
        "queue",
        "team",
        ("wait_for_signal", WaitForSignalFilter),
        ("sandbox", SandboxFilter),
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
    fieldsets = tuple(
        (title, {"fields": tuple(_shown(n) for n in names)}) for title, names in TASK_SECTIONS
    )
    #: Model fields the change page deliberately leaves out.
    hidden_fields = frozenset({"signal_token_digest", "idempotency_fingerprint", "callback_digest"})
    #: Model fields shown through a display method (formatted or redacted).
    displayed_as = {
        "headers": "headers_redacted",
        "payload": "payload_json",
        "result": "result_json",
        "poll_config": "poll_config_json",
        "early_signal_result": "early_signal_result_json",
        "metadata": "metadata_json",
        **{name: _shown(name) for name in TIMESTAMP_FIELDS},
    }

    class Media:
        css: ClassVar[dict[str, tuple[str, ...]]] = {"all": ("asyncqueue/admin.css",)}

    def get_readonly_fields(self, request: HttpRequest, obj: Task | None = None) -> tuple[str, ...]:
        return tuple(_shown(name) for _, names in TASK_SECTIONS for name in names)

    def get_urls(self) -> list[URLPattern]:
        info = (self.opts.app_label, self.opts.model_name)
        page_action = path(
            "<path:object_id>/do/<str:action>/",
            self.admin_site.admin_view(self.page_action_view),
            name="{}_{}_page_action".format(*info),
        )
        return [page_action, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The task page, with a button for each action its status allows."""
        extra = dict(extra_context or {})
        task = self._one(request, object_id).first()
        if task is not None and self.has_operate_permission(request):
            info = (self.opts.app_label, self.opts.model_name)
            extra["task_actions"] = [
                {
                    "label": label,
                    "url": reverse(
                        "admin:{}_{}_page_action".format(*info),
                        args=[task.pk, name],
                        current_app=self.admin_site.name,
                    ),
                    "confirm": name == "cancel_tasks",
                }
                for name, label, statuses in PAGE_ACTIONS
                if task.status in statuses and (name != "resend_webhooks" or task.on_complete_url)
            ]
        return super().change_view(request, object_id, form_url, extra)

    def _one(self, request: HttpRequest, object_id: str) -> QuerySet[Task]:
        try:
            pk = uuid.UUID(str(object_id))
        except ValueError:
            return self.get_queryset(request).none()
        return self.get_queryset(request).filter(pk=pk)

    def page_action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """A button of the task page: the same ``@admin.action`` as the list's, on this one
        task (POST only). Back to the task page afterwards; the complete and fail actions
        answer their form first, which posts back here."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if action not in {name for name, _, _ in PAGE_ACTIONS}:
            raise Http404("No such action.")
        if not self.has_operate_permission(request):
            raise PermissionDenied
        queryset = self._one(request, object_id)
        if not queryset.exists():
            raise Http404("No such task.")
        response = getattr(self, action)(request, queryset)
        if response is not None:
            return response  # type: ignore[no-any-return]
        info = (self.opts.app_label, self.opts.model_name)
        return HttpResponseRedirect(
            reverse(
                "admin:{}_{}_change".format(*info),
                args=[object_id],
                current_app=self.admin_site.name,
            )
        )

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

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Task) -> str:
        """The whole id, clipped to its first characters by the stylesheet: the rest shows on
        hover and comes along when copied."""
        return format_html('<code class="aq-id" title="{}">{}</code>', obj.pk, obj.pk)

    @admin.display(description="target", ordering="target_url")
    def target(self, obj: Task) -> str:
        """Host and path (not the query string, which may carry credentials)."""
        try:
            parts = urlsplit(obj.target_url)
            shown = f"{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}"
            shown += parts.path
        except ValueError:
            shown = ""
        shown = shown or obj.target_url[:60]
        return format_html('<span class="aq-target" title="{}">{}</span>', shown, shown)

    @admin.display(description="attempts", ordering="attempt_count")
    def attempts(self, obj: Task) -> int:
        return obj.attempt_count

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Task) -> str:
        return seconds(obj.created_at)

    @admin.display(description="finished", ordering="completed_at")
    def finished_at(self, obj: Task) -> str:
        return seconds(obj.completed_at)

    @admin.display(description="headers")
    def headers_redacted(self, obj: Task) -> str:
        return pretty_json(redact_headers(obj.headers or {}))

    @admin.display(description="payload")
    def payload_json(self, obj: Task) -> str:
        return pretty_json(obj.payload)

    @admin.display(description="result")
    def result_json(self, obj: Task) -> str:
        return pretty_json(obj.result)

    @admin.display(description="poll config")
    def poll_config_json(self, obj: Task) -> str:
        return pretty_json(obj.poll_config)

    @admin.display(description="early signal result")
    def early_signal_result_json(self, obj: Task) -> str:
        return pretty_json(obj.early_signal_result)

    @admin.display(description="metadata")
    def metadata_json(self, obj: Task) -> str:
        return pretty_json(obj.metadata)

    # -- actions ---------------------------------------------------------------------------

    def _apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[Task],
        verb: str,
        service: Callable[[Team, Any], Any],
    ) -> None:
        """Call ``service(team, task_id)`` for each selected task (see :func:`run_action`)."""
        run_action(
            self,
            request,
            _selected(queryset),
            lambda task: service(task.team, task.pk),
            verb=verb,
            noun="task",
        )

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
        if not any(task.status in states.RESOLVABLE for task in tasks):
            self.message_user(
                request,
                "None of the selected tasks is waiting for a signal or polling.",
                messages.WARNING,
            )
            return None
        if "apply" in request.POST:
            form = ResolveWaitingForm(status, request.POST)
            if form.is_valid():
                result, error = form.cleaned_data["result"], form.cleaned_data.get("error", "")
                run_action(
                    self,
                    request,
                    tasks,
                    lambda task: services.resolve_waiting_task(
                        task.team, task.pk, status, result=result, error=error
                    ),
                    verb="Completed" if status == TaskStatus.COMPLETED else "Failed",
                    noun="waiting task",
                )
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
            "waiting": [t for t in tasks if t.status in states.RESOLVABLE],
            "not_waiting": [t for t in tasks if t.status not in states.RESOLVABLE],
            "action": request.POST.get("action", ""),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/asyncqueue/task/resolve_waiting.html", context, status=200
        )


for _name in TIMESTAMP_FIELDS:
    setattr(TaskAdmin, _shown(_name), _timestamp_display(_name))


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

    # The task list's columns, with the error in place of the creation time.
    list_display = (*TaskAdmin.list_display[:6], "short_error", "finished_at")
    list_filter = (DeadStatusFilter, "queue", "team", "completed_at", "created_at")
    ordering = ("-completed_at", "-id")
    actions = ["retry_tasks", "resend_webhooks"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        return super().get_queryset(request).filter(status__in=list(states.RETRYABLE))

    @admin.display(description="error")
    def short_error(self, obj: Task) -> str:
        return obj.error if len(obj.error) <= 80 else obj.error[:79] + "…"
