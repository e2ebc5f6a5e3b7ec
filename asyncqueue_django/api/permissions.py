from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from asyncqueue_django.models import ApiKey


class HasApiKey(BasePermission):
    """Only requests authenticated by an active API key (the key's team scopes every query)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, ApiKey):
            raise exceptions.NotAuthenticated("API key required")
        return True
