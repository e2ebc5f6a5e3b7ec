"""One mapper from errors to HTTP responses: ``{"error", "code", "fields"}`` bodies."""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from asyncqueue_django import exceptions as domain


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "Request body is too large"


DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "invalid_json",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.NotFound: "not_found",
    exceptions.Throttled: "rate_limited",
    exceptions.PermissionDenied: "permission_denied",
}


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, str]:
    """DRF's nested error lists → ``{"field.sub": "first message"}``."""
    if isinstance(detail, dict):
        out: dict[str, str] = {}
        for key, value in detail.items():
            name = str(key) if key != "non_field_errors" else "body"
            out.update(flatten_errors(value, f"{prefix}.{name}" if prefix else name))
        return out
    if isinstance(detail, list):
        if detail and all(not isinstance(d, dict | list) for d in detail):
            return {prefix or "body": str(detail[0])}
        out = {}
        for index, value in enumerate(detail):
            out.update(flatten_errors(value, f"{prefix}[{index}]"))
        return out
    return {prefix or "body": str(detail)}


def error_response(
    message: str,
    code: str,
    http_status: int,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {"error": message, "code": code}
    if fields:
        body["fields"] = fields
    body.update(extra)
    return Response(body, status=http_status, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, domain.ServiceError):
        # Each domain error names its own status (404 not found, 409 conflicts, …).
        return error_response(exc.message, exc.code, exc.http_status, **exc.extra)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django report it as a 500 with a traceback
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None) if isinstance(exc, exceptions.Throttled) else None
    if wait is not None:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        summary = "; ".join(f"{name}: {msg}" for name, msg in fields.items())
        return error_response(
            f"Invalid request: {summary}", "validation_error", 400, fields, headers
        )
    code = DRF_CODES.get(type(exc)) or getattr(exc, "default_code", "error")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        sent = context["request"].content_type if context.get("request") else ""
        detail = (
            f"Content-Type must be application/json (this request sent "
            f"{sent.split(';')[0].strip() or 'none'}); send the body as JSON with "
            "`Content-Type: application/json`"
        )
    return error_response(str(detail), str(code), exc.status_code, headers=headers)
