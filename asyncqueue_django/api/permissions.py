from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from asyncqueue_django.models import ApiKey

HOW_TO_SEND = "send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`"


def missing_key_message(request: Request) -> str:
    """Why no key was found, and how to send one: an ``Authorization`` header without the
    ``Bearer`` scheme (or with nothing after it) is the usual mistake."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return f"API key required: {HOW_TO_SEND}"
    scheme = header.partition(" ")[0]
    if scheme.lower() == "bearer":
        return f"API key required: the Bearer scheme has no key after it; {HOW_TO_SEND}"
    return (
        f"API key required: the Authorization header does not use the Bearer scheme; {HOW_TO_SEND}"
    )


class HasApiKey(BasePermission):
    """Only requests authenticated by an active API key (the key's team scopes every query)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, ApiKey):
            raise exceptions.NotAuthenticated(missing_key_message(request))
        return True
