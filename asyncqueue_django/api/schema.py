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
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, PolymorphicProxySerializer
from drf_spectacular.utils import extend_schema as spectacular_extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from asyncqueue_django import __version__, http, providers
from asyncqueue_django.api.serializers import (
    HEADER_NAME_RE,
    MAX_BATCH,
    METHODS,
    NOT_IN_TEMPLATES,
    QueueSerializer,
    RevokedTokenSerializer,
    ScheduleSerializer,
    TaskDetailSerializer,
    TaskSerializer,
    TokenSerializer,
)
from asyncqueue_django.conf import app_settings
from asyncqueue_django.states import TaskStatus
from asyncqueue_django.validators import FLOW_KEY_RE, MAX_FLOW_PERIOD, QUEUE_NAME_RE


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
        help_text="Only for tasks that wait or poll, only in the answer that created the task.",
    )
    callbackUrl = serializers.URLField(
        required=False,
        help_text="Only for tasks whose call carries {asyncqueue_callback_url}: the one-time "
        "provider callback URL, only in the answer that created the task (also as "
        "task.callbackId).",
    )


class ProviderSerializer(serializers.Serializer[Any]):
    id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    docs = serializers.URLField(help_text="The provider's public API reference.")
    pollConfig = serializers.DictField(help_text="The template's poll settings.")


class ProviderListEnvelope(serializers.Serializer[Any]):
    providers = ProviderSerializer(many=True)


class BatchCreatedEnvelope(serializers.Serializer[Any]):
    tasks = serializers.ListField(
        child=TaskCreatedEnvelope(),
        min_length=1,
        max_length=MAX_BATCH,
        help_text="One entry per item, in the order given.",
    )


class ScheduleEnvelope(serializers.Serializer[Any]):
    schedule = ScheduleSerializer()


class ScheduleListEnvelope(serializers.Serializer[Any]):
    schedules = ScheduleSerializer(many=True)


#: ``POST /v1/tasks`` answers a task, or with ``schedule`` in the body, a schedule.
TaskCreatedOrScheduledEnvelope = PolymorphicProxySerializer(
    component_name="TaskCreatedOrScheduled",
    serializers=[TaskCreatedEnvelope, ScheduleEnvelope],
    resource_type_field_name=None,
)


class TokenEnvelope(serializers.Serializer[Any]):
    token = TokenSerializer()


class RevokedTokenEnvelope(serializers.Serializer[Any]):
    token = RevokedTokenSerializer()


class TokenListEnvelope(serializers.Serializer[Any]):
    tokens = TokenSerializer(many=True)


class QueueEnvelope(serializers.Serializer[Any]):
    queue = QueueSerializer()


class QueueListEnvelope(serializers.Serializer[Any]):
    queues = QueueSerializer(many=True)


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
        403: "A test key asked to change live work (a live task or schedule, or a queue).",
        404: "Not found (another team's task or token answers the same).",
        405: "Method not allowed.",
        409: "The task's status does not allow this (named in `status`), or a conflict.",
        413: "Request body too large.",
        415: "Not application/json.",
        429: "Rate limited; see Retry-After.",
        503: "A server setting is missing: the Token Vault's encryption key, or PUBLIC_BASE_URL "
        "for a task whose call carries {asyncqueue_callback_url}.",
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


SCHEDULE_EXAMPLES = [
    OpenApiExample(
        "Every weekday at 9 in Paris",
        value={
            "cron": "0 9 * * 1-5",
            "timezone": "Europe/Paris",
            "task": {
                "targetUrl": "https://your-app.example/api/daily-report",
                "payload": {"report": "sales"},
            },
        },
        request_only=True,
    ),
]

#: Create bodies whose fields carry the task limits: a task, a task with ``schedule``, and a
#: schedule's task template.
CREATE_BODIES = ("TaskCreateRequest", "ScheduledTaskCreateRequest", "ScheduleTaskRequest")


#: A JSON string the server stores: no NUL character (PostgreSQL cannot store one).
NO_NUL = "^[^\\x00]*$"
#: An ``Idempotency-Key`` header as the server takes it: 1-255 printable ASCII characters,
#: not starting with a space; trailing spaces and tabs are trimmed (as HTTP servers do).
IDEMPOTENCY_HEADER = "^[!-~](?:[ -~]*[!-~])?[ \\t]*$"
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+(?:[/?#]\S*)?$"


def _json_value() -> dict[str, Any]:
    """Any JSON value the server stores: strings without NUL, any depth of arrays and objects
    (nesting deeper than 64 levels answers 400 ``invalid_json``)."""
    ref = {"$ref": "#/components/schemas/JSONValue"}
    return {
        "description": "Any JSON value; strings (and object keys) must not contain NUL (\\u0000).",
        "oneOf": [
            {"type": "null"},
            {"type": "string", "pattern": NO_NUL},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "array", "items": ref},
            {
                "type": "object",
                "propertyNames": {"pattern": NO_NUL},
                "additionalProperties": ref,
            },
        ],
    }


def _both(a: str, a_schema: dict[str, Any], b: str, b_schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": [a, b], "properties": {a: a_schema, b: b_schema}}


def _poll_config_schema() -> dict[str, Any]:
    """``pollConfig`` as the server validates it (``providers.check_poll_config``); the keys a
    ``provider`` template does not supply are required."""
    cap = app_settings.MAX_POLL_DURATION
    template = {
        "type": "string",
        "minLength": 1,
        "maxLength": 2048,
        "description": "A URL; {startResult.body.<dot.path>} and {startResult.headers.<name>} "
        "are filled in from the submit call's answer.",
    }
    path = {"type": "string", "pattern": providers.PATH_RE.pattern, "maxLength": 500}
    values = {
        "type": "array",
        "maxItems": providers.MAX_VALUES,
        "items": {"type": ["string", "number"]},
    }
    return {
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "urlTemplate": template,
            "interval": {
                "type": "integer",
                "minimum": app_settings.MIN_POLL_INTERVAL,
                "maximum": cap,
                "description": "Seconds between polls.",
            },
            "statusPath": path,
            "doneValues": {**values, "minItems": 1},
            "failValues": values,
            "resultPath": path,
            "resultUrlTemplate": template,
            "errorPath": path,
            "forwardAuth": {
                "type": "boolean",
                "description": "Send the task's own headers (its API key) with each poll.",
            },
            "maxDuration": {"type": "integer", "minimum": 1, "maximum": cap},
        },
        "description": "How to poll the provider after a successful submit call; overrides "
        "the provider template key by key. Without a provider, urlTemplate, interval, "
        "statusPath, doneValues and maxDuration are required.",
    }


def _flow_control_schema() -> dict[str, Any]:
    """``flowControl`` as the server takes it: a key and at least one of parallelism, rate."""
    bound = {"type": "integer", "minimum": 1, "maximum": app_settings.FLOW_CONTROL_MAX_RATE}
    return {
        "type": ["object", "null"],
        "description": "Tasks of the team sharing `key` start at most `parallelism` at once "
        "and at most `rate` per `period` seconds; a task over the limit waits (never failed).",
        "properties": {
            "key": {"type": "string", "pattern": FLOW_KEY_RE.pattern},
            "parallelism": bound,
            "rate": bound,
            "period": {"type": "integer", "minimum": 1, "maximum": MAX_FLOW_PERIOD, "default": 1},
        },
        "required": ["key"],
        "additionalProperties": False,
        "anyOf": [{"required": ["parallelism"]}, {"required": ["rate"]}, {"type": "null"}],
    }


def _declare_limits(result: dict[str, Any]) -> None:
    """Every constraint the server enforces that OpenAPI can state, with the limits read from
    the settings when the document is generated (so a host's ``ASYNCQUEUE`` shows)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["JSONValue"] = _json_value()
    json_ref = {"$ref": "#/components/schemas/JSONValue"}
    queue: dict[str, Any] = {"type": "string", "pattern": QUEUE_NAME_RE.pattern}
    if app_settings.QUEUES is not None:
        queue["enum"] = list(app_settings.QUEUES)
    url = {"type": "string", "pattern": URL_PATTERN, "maxLength": http.MAX_URL_LENGTH}
    maybe = ["integer", "null"]

    limits: dict[str, dict[str, Any]] = {
        "targetUrl": {**url, "format": "uri"},
        "onCompleteUrl": {**url, "type": ["string", "null"], "format": "uri"},
        "method": {
            "type": "string",
            "enum": [*METHODS, *(m.lower() for m in METHODS)],
            "description": "Case-insensitive.",
        },
        "headers": {
            "type": "object",
            "maxProperties": app_settings.MAX_HEADERS,
            "propertyNames": {"pattern": HEADER_NAME_RE.pattern},
            "additionalProperties": {
                "type": "string",
                "maxLength": 8192,
                "pattern": "^[^\\r\\n\\x00]*$",
            },
            "description": "Header names are tokens (RFC 9110); Host, Content-Length, "
            "hop-by-hop headers, X-AsyncQueue-* and webhook-* are refused.",
        },
        "payload": json_ref,
        "body": {"type": ["string", "null"], "pattern": NO_NUL},
        "timeout": {
            "type": maybe,
            "minimum": 1,
            "maximum": app_settings.MAX_TIMEOUT,
        },
        "delay": {
            "type": maybe,
            "minimum": 0,
            "maximum": app_settings.MAX_DELAY,
        },
        "maxRetries": {
            "type": maybe,
            "minimum": 0,
            "maximum": app_settings.MAX_RETRIES,
        },
        "maxWaitTime": {
            "type": maybe,
            "minimum": 1,
            "maximum": app_settings.MAX_WAIT_TIME,
        },
        "queue": queue,
        "metadata": {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": json_ref,
        },
        "idempotencyKey": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "pattern": "^[^\\x00-\\x1f\\x7f]*$",
        },
        "provider": {"type": ["string", "null"], "enum": [*providers.PROVIDERS, None]},
        "pollConfig": _poll_config_schema(),
        "flowControl": _flow_control_schema(),
    }
    for body in CREATE_BODIES:
        if body not in schemas:
            continue
        create = schemas[body].get("properties", {})
        for name, schema in limits.items():
            if name in create:
                keep = {k: v for k, v in create[name].items() if k in ("description", "default")}
                create[name] = {**schema, **keep}
        # Either payload or body, either delay or delayUntil (null counts as not given).
        schemas[body]["allOf"] = [
            {"not": _both("payload", {"not": {"type": "null"}}, "body", {"type": "string"})},
            {"not": _both("delay", {"type": "integer"}, "delayUntil", {"type": "string"})},
        ]
    template = schemas.get("ScheduleTaskRequest", {}).get("properties", {})
    for name in NOT_IN_TEMPLATES:  # refused in a template (unknown properties are refused)
        template.pop(name, None)
    if "waitForSignal" in template:
        template["waitForSignal"] = {"type": "boolean", "enum": [False]}

    for name in ("Task", "TaskDetail"):
        deadline = schemas.get(name, {}).get("properties", {}).get("waitDeadline")
        if deadline is not None:
            deadline["description"] = (
                "Set when the task starts waiting and moved by heartbeats; kept after the wait "
                "ends (a signalled, timed-out or cancelled task shows the deadline it had); "
                "null before the wait and after a retry."
            )

    heartbeat = schemas.get("HeartbeatRequest", {}).get("properties", {})
    if "extendBy" in heartbeat:
        heartbeat["extendBy"]["maximum"] = app_settings.MAX_WAIT_TIME
    signal = schemas.get("SignalRequest", {}).get("properties", {})
    if "result" in signal:
        signal["result"] = json_ref
    if "error" in signal:
        signal["error"]["pattern"] = NO_NUL

    statuses = "|".join(TaskStatus.values)
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict) or method == "parameters":
                continue
            for parameter in operation.get("parameters", []):
                name, where = parameter["name"], parameter["in"]
                schema = parameter.get("schema", {})
                if where == "query" and schema.get("type") == "integer":
                    # An empty value (`?limit=`) means the default.
                    parameter["schema"] = {"anyOf": [schema, {"type": "string", "maxLength": 0}]}
                elif (name, where) == ("status", "query"):
                    # Empty names are skipped: "", "failed," and "failed,,timeout" are valid.
                    parameter["schema"] = {
                        "type": "string",
                        "pattern": f"^,*(({statuses})(,+({statuses}))*)?,*$",
                    }
                elif (name, where) == ("queue", "query"):
                    # Empty: no filter.
                    parameter["schema"] = {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{0,100}$"}
                elif (name, where) == ("Idempotency-Key", "header"):
                    parameter["schema"] = {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 255,
                        "pattern": IDEMPOTENCY_HEADER,
                    }


#: OpenAPI links: where each operation's inputs come from, so a client generator (and stateful
#: fuzzing) can follow a created task to every operation on it.
TASK_ID = "$response.body#/task/id"
SCHEDULE_ID = "$response.body#/schedule/id"
LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("createTask", "201"): {
        "GetTask": {"operationId": "getTask", "parameters": {"task_id": TASK_ID}},
        "CancelTask": {"operationId": "cancelTask", "parameters": {"task_id": TASK_ID}},
        "DeleteTask": {"operationId": "deleteTask", "parameters": {"task_id": TASK_ID}},
        "RetryTask": {"operationId": "retryTask", "parameters": {"task_id": TASK_ID}},
        "SendSignal": {
            "operationId": "sendSignal",
            "parameters": {"token": "$response.body#/signalToken"},
            "description": "For a waitForSignal task: its one-time signal token.",
        },
        "Heartbeat": {
            "operationId": "heartbeat",
            "parameters": {"token": "$response.body#/signalToken"},
            "description": "For a waitForSignal task: its one-time signal token.",
        },
    },
    ("createTask", "200"): {
        "GetTask": {"operationId": "getTask", "parameters": {"task_id": TASK_ID}},
        "CancelTask": {"operationId": "cancelTask", "parameters": {"task_id": TASK_ID}},
        "RetryTask": {"operationId": "retryTask", "parameters": {"task_id": TASK_ID}},
    },
    ("getTask", "200"): {
        "CancelTask": {"operationId": "cancelTask", "parameters": {"task_id": TASK_ID}},
        "RetryTask": {"operationId": "retryTask", "parameters": {"task_id": TASK_ID}},
    },
    ("cancelTask", "200"): {
        "RetryTask": {"operationId": "retryTask", "parameters": {"task_id": TASK_ID}},
        "GetTask": {"operationId": "getTask", "parameters": {"task_id": TASK_ID}},
    },
    ("retryTask", "200"): {
        "GetTask": {"operationId": "getTask", "parameters": {"task_id": TASK_ID}},
        "CancelTask": {"operationId": "cancelTask", "parameters": {"task_id": TASK_ID}},
    },
    ("sendSignal", "200"): {
        "GetTask": {"operationId": "getTask", "parameters": {"task_id": TASK_ID}},
        "RetryTask": {"operationId": "retryTask", "parameters": {"task_id": TASK_ID}},
    },
    ("sendSignal", "202"): {
        "GetTask": {"operationId": "getTask", "parameters": {"task_id": TASK_ID}},
    },
    ("heartbeat", "200"): {
        "GetTask": {"operationId": "getTask", "parameters": {"task_id": TASK_ID}},
    },
    ("createSchedule", "201"): {
        name: {"operationId": operation, "parameters": {"schedule_id": SCHEDULE_ID}}
        for name, operation in [
            ("GetSchedule", "getSchedule"),
            ("UpdateSchedule", "updateSchedule"),
            ("PauseSchedule", "pauseSchedule"),
            ("ResumeSchedule", "resumeSchedule"),
            ("DeleteSchedule", "deleteSchedule"),
        ]
    },
}


def _any_value_once(node: Any) -> Any:
    """OpenAPI 3.1 renders a nullable "any JSON" field as ``oneOf: [{}, {"type": "null"}]``,
    which a ``null`` matches twice (so, under ``oneOf``, not at all): make it ``{}``."""
    if isinstance(node, dict):
        if node.get("oneOf") == [{}, {"type": "null"}]:
            node = {k: v for k, v in node.items() if k != "oneOf"}
        return {k: _any_value_once(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_any_value_once(v) for v in node]
    return node


def _declare_links(result: dict[str, Any]) -> None:
    for item in result.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for code, response in operation.get("responses", {}).items():
                links = LINKS.get((operation.get("operationId", ""), code))
                if links:
                    response["links"] = links


def _as_served(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """Post-processing hook: the paths as the README writes them (no trailing slash; the server
    accepts one too), request bodies that refuse unknown properties, as the server does, every
    limit the server enforces, and the links between operations."""
    result["paths"] = {
        (path.rstrip("/") or "/"): item for path, item in result.get("paths", {}).items()
    }
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    result["components"] = _any_value_once(result.get("components", {}))
    _declare_limits(result)
    _declare_links(result)
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
    "OAS_VERSION": "3.1.0",
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
