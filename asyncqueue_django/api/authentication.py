"""API-key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from asyncqueue_django import services
from asyncqueue_django.models import ApiKey, Team

MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class TeamPrincipal:
    """``request.user`` for API-key requests: the team, not a Django user."""

    team: Team
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def pk(self) -> int:
        return self.team.pk


def raw_key_from(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = request.headers.get("X-API-Key", "").strip()
    return key or None


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[TeamPrincipal, ApiKey] | None:
        raw = raw_key_from(request)
        if raw is None:
            return None  # the permission class answers 401 "API key required"
        # A create checks the key again in its own INSERT: it may use a recently read key.
        view = (getattr(request, "parser_context", None) or {}).get("view")
        checked_by_write = getattr(view, "action", None) == "create"
        key = (
            services.authenticate_api_key(raw, write_checks_key=checked_by_write)
            if len(raw) <= MAX_KEY_LENGTH
            else None
        )
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key")
        return TeamPrincipal(team=key.team), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="asyncqueue"'
