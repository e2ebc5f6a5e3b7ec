"""The team pages: teams, their keys (read-only) and webhook secret rotation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from asyncqueue_django import services
from asyncqueue_django.admin.base import OperateMixin, ReadOnlyInline
from asyncqueue_django.conf import app_settings
from asyncqueue_django.models import ApiKey, Team

if TYPE_CHECKING:
    TeamAdminBase = admin.ModelAdmin[Team]
else:
    TeamAdminBase = admin.ModelAdmin


class ApiKeyInline(ReadOnlyInline):
    """The team's keys (prefixes only; add and revoke them on the API keys page)."""

    model = ApiKey
    fields = ("prefix", "name", "mode", "created_at", "last_used_at", "revoked_at")


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
