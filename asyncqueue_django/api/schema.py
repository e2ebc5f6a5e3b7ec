"""OpenAPI 3 (drf-spectacular): ``/v1/schema`` and interactive docs at ``/v1/docs``.

The schema describes what the server does, closely enough to be fuzzed against: request bodies
refuse unknown properties (as the server does), every error answer is documented with its
``{"error", "code", "fields"?, "status"?}`` body, and nullable fields are marked nullable.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from drf_spectacular.utils import extend_schema as spectacular_extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from asyncqueue_django import __version__
from asyncqueue_django.api.serializers import TaskDetailSerializer, TaskSerializer


class AsyncQueueSchema(AutoSchema):
    """drf-spectacular's AutoSchema; our list answers are envelopes, never bare arrays."""

    def _is_list_view(self, serializer: Any = None) -> bool:
        return False


F = TypeVar("F", bound=Callable[..., Any])


def extend_schema(**kwargs: Any) -> Callable[[F], F]:
    """drf-spectacular's ``extend_schema`` for view methods, based on drf-spectacular's
    AutoSchema whatever the host's ``DEFAULT_SCHEMA_CLASS`` is (it would otherwise be the
    base), so the host never has to edit ``REST_FRAMEWORK`` for our schema to work."""
    decorate = spectacular_extend_schema(**kwargs)

    def decorator(f: F) -> F:
        if not inspect.isclass(f):
            if not hasattr(f, "kwargs"):
                f.kwargs = {}  # type: ignore[attr-defined]
            f.kwargs.setdefault("schema", AsyncQueueSchema)  # type: ignore[attr-defined]
        return decorate(f)

    return decorator


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "asyncqueue_django.api.authentication.ApiKeyAuthentication"
    name = ["bearerAuth", "apiKeyHeader"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{"bearerAuth": []}, {"apiKeyHeader": []}]  # either one

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`"},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]


# --------------------------------------------------------------------------------------------
# Answer bodies (documentation only: the views build these dicts themselves)
# --------------------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer[Any]):
    error = serializers.CharField(help_text="A human message.")
    code = serializers.CharField(help_text="A stable machine-readable code.")
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.CharField(), required=False, help_text="Per-field messages (400)."
    )
    status = serializers.CharField(
        required=False, help_text="The task's current status (409 invalid_status)."
    )


class TaskEnvelope(serializers.Serializer[Any]):
    task = TaskSerializer()


class TaskDetailEnvelope(serializers.Serializer[Any]):
    task = TaskDetailSerializer()


class TaskCreatedEnvelope(serializers.Serializer[Any]):
    task = TaskSerializer()
    signalToken = serializers.RegexField(
        r"^[0-9a-f]{64}$",
        required=False,
        help_text="Only for waitForSignal tasks, only in the answer that created the task.",
    )


class PaginationSerializer(serializers.Serializer[Any]):
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    hasMore = serializers.BooleanField()


class TaskListEnvelope(serializers.Serializer[Any]):
    tasks = TaskSerializer(many=True)
    pagination = PaginationSerializer()


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    text = {
        400: "Invalid request: a field named in `fields`, or malformed JSON.",
        401: "API key required, or invalid or revoked.",
        404: "Not found (another team's task answers the same).",
        405: "Method not allowed.",
        409: "The task's status does not allow this (named in `status`), or a conflict.",
        413: "Request body too large.",
        415: "Not application/json.",
        429: "Rate limited; see Retry-After.",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=text[code]) for code in codes}


PATTERN_EXAMPLES = [
    OpenApiExample(
        "Polling - convert a video",
        value={
            "targetUrl": "https://your-app.example/api/convert-video",
            "payload": {"videoId": "abc123"},
        },
        request_only=True,
    ),
    OpenApiExample(
        "Signal - a human review",
        value={
            "targetUrl": "https://your-app.example/api/start-review",
            "payload": {"documentId": "doc_456"},
            "waitForSignal": True,
            "maxWaitTime": 86400,
        },
        request_only=True,
    ),
    OpenApiExample(
        "Payment with timeout",
        value={
            "targetUrl": "https://your-app.example/api/start-checkout",
            "payload": {"orderId": "order_789", "amount": 99.99},
            "waitForSignal": True,
            "maxWaitTime": 3600,
            "onCompleteUrl": "https://your-app.example/api/order-webhook",
        },
        request_only=True,
    ),
]


def _as_served(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """Post-processing hook: the paths as the README writes them (no trailing slash; the server
    accepts one too), and request bodies that refuse unknown properties, as the server does."""
    result["paths"] = {
        (path.rstrip("/") or "/"): item for path, item in result.get("paths", {}).items()
    }
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result


SCHEMA_SETTINGS: dict[str, Any] = {
    "TITLE": "asyncqueue_django",
    "DESCRIPTION": (
        "A self-hosted HTTP task service with wait-for-signal. Create a task (a target URL and a "
        "payload); a worker calls the URL with retries. Learn the outcome by polling (or long "
        "polling with `?wait=`), by an onComplete webhook, or by signalling a `waitForSignal` "
        "task with its one-time token."
    ),
    "VERSION": __version__,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/v1",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "asyncqueue_django.api.schema._as_served",
    ],
    "ENUM_NAME_OVERRIDES": {
        "TaskStatusEnum": "asyncqueue_django.states.TaskStatus",
        "RetryBackoffEnum": "asyncqueue_django.models.RetryBackoff",
        "SignalStatusEnum": "asyncqueue_django.models.SignalStatus",
        "AttemptOutcomeEnum": "asyncqueue_django.models.AttemptOutcome",
    },
}


class SchemaView(SpectacularAPIView):
    """``GET /v1/schema``: the OpenAPI document (JSON; ``?format=yaml`` for YAML)."""

    urlconf = "asyncqueue_django.urls"
    custom_settings = SCHEMA_SETTINGS
    schema = None  # the schema endpoint is not itself part of the API it describes
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []

    def get_renderers(self) -> list[Any]:
        renderers = super().get_renderers()
        # JSON first: clients and fuzzers that send no Accept header get JSON.
        return sorted(renderers, key=lambda r: not isinstance(r, JSONRenderer))


def docs_view(request: HttpRequest) -> HttpResponse:
    """``GET /v1/docs``: Swagger UI for the schema."""
    return render(
        request,
        "asyncqueue/swagger.html",
        {"schema_url": reverse("asyncqueue:schema"), "title": "asyncqueue_django API"},
    )


def int_range(low: int, high: int | None = None) -> dict[str, Any]:
    """An integer parameter schema with bounds (the server answers 400 outside them)."""
    schema: dict[str, Any] = {"type": "integer", "minimum": low}
    if high is not None:
        schema["maximum"] = high
    return schema


__all__ = ["AsyncQueueSchema", "SchemaView", "docs_view", "extend_schema", "int_range"]
