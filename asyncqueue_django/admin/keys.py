"""The API key pages: issue a key (shown once), revoke keys."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from asyncqueue_django import services
from asyncqueue_django.admin.base import OperateMixin
from asyncqueue_django.models import ApiKey
from asyncqueue_django.states import KeyMode

if TYPE_CHECKING:
    ApiKeyAdminBase = admin.ModelAdmin[ApiKey]
else:
    ApiKeyAdminBase = admin.ModelAdmin


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
    """Keys are issued by the add form (team, name, live or test mode) through
    ``services.create_api_key``; the
    page that answers shows the raw key once, and nothing ever shows it again (only its
    digest is stored). Revoke with the action."""

    list_display = ("prefix", "team", "name", "mode", "created_at", "last_used_at", "revoked_at")
    list_filter = (RevokedFilter, "mode", "team")
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
            return ("team", "name", "mode")
        return ("team", "name", "mode", "prefix", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> tuple[str, ...]:
        return () if obj is None else self.get_fields(request, obj)

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None and "mode" in form.base_fields:
            # Live unless asked otherwise (as on the command line).
            mode = form.base_fields["mode"]
            mode.required = False
            mode.help_text = "Test keys create sandbox tasks that never call their target."
        return form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the row keeps the history of who used what

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        data = form.cleaned_data
        mode = data.get("mode") or KeyMode.LIVE
        issued = services.create_api_key(data["team"], data["name"], mode=mode)
        key = issued.api_key
        obj.pk, obj.prefix, obj.digest, obj.created_at, obj.mode = (
            key.pk,
            key.prefix,
            key.digest,
            key.created_at,
            key.mode,
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
