"""The Token Vault page: names and dates only, never a value (not even its ciphertext), and a
revoke action through ``services.revoke_token``. Tokens are created over the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from asyncqueue_django import services
from asyncqueue_django.admin.base import OperateMixin, run_action
from asyncqueue_django.admin.keys import RevokedFilter
from asyncqueue_django.models import VaultToken

if TYPE_CHECKING:
    VaultTokenAdminBase = admin.ModelAdmin[VaultToken]
else:
    VaultTokenAdminBase = admin.ModelAdmin


@admin.register(VaultToken)
class VaultTokenAdmin(OperateMixin, VaultTokenAdminBase):
    list_display = ("id", "name", "team", "created_at", "revoked_at")
    list_filter = (RevokedFilter, "team")
    list_select_related = ("team",)
    search_fields = ("=id", "name", "team__name")
    fields = ("id", "name", "team", "created_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke_tokens"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[VaultToken]:
        # The ciphertext is never loaded by an admin page.
        return super().get_queryset(request).select_related("team").defer("ciphertext")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a value is given once, over the API (POST /v1/tokens)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: tasks that refer to it then fail with a clear error

    @admin.action(description="Revoke selected tokens", permissions=["operate"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[VaultToken]) -> None:
        run_action(
            self,
            request,
            queryset.select_related("team").only("pk", "team__id", "team__name"),
            lambda token: services.revoke_token(token.team, token.pk),
            verb="Revoked",
            noun="token",
        )
