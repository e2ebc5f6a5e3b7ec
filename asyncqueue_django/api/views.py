"""DRF views for ``/v1``. Authentication, permissions, parsing and error handling are set here
explicitly, so the host project's ``REST_FRAMEWORK`` defaults never change this API."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from django.db import connection
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_view,
)
from drf_spectacular.utils import extend_schema as spectacular_extend_schema
from rest_framework import status as http_status
from rest_framework import viewsets
from rest_framework.authentication import BaseAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.versioning import BaseVersioning
from rest_framework.views import APIView

from asyncqueue_django import exceptions, providers, services, states, tracing, validators
from asyncqueue_django.api.authentication import ApiKeyAuthentication, TeamPrincipal
from asyncqueue_django.api.exceptions import PayloadTooLarge, error_response, exception_handler
from asyncqueue_django.api.longpoll import watcher
from asyncqueue_django.api.parsers import StrictJSONParser
from asyncqueue_django.api.permissions import HasApiKey
from asyncqueue_django.api.schema import (
    PATTERN_EXAMPLES,
    SCHEDULE_EXAMPLES,
    AsyncQueueSchema,
    BatchCreatedEnvelope,
    ProviderListEnvelope,
    QueueEnvelope,
    QueueListEnvelope,
    RevokedTokenEnvelope,
    ScheduleEnvelope,
    ScheduleListEnvelope,
    TaskCreatedOrScheduledEnvelope,
    TaskDetailEnvelope,
    TaskEnvelope,
    TaskListEnvelope,
    TokenEnvelope,
    TokenListEnvelope,
    errors,
    extend_schema,
    int_range,
)
from asyncqueue_django.api.serializers import (
    MAX_BATCH,
    BatchCreateSerializer,
    HeartbeatSerializer,
    QueueSerializer,
    RevokedTokenSerializer,
    ScheduleCreateSerializer,
    ScheduledTaskCreateSerializer,
    ScheduleSerializer,
    ScheduleUpdateSerializer,
    SignalSerializer,
    TaskDetailSerializer,
    TaskSerializer,
    TokenCreateSerializer,
    TokenSerializer,
    check_idempotency_key,
    template_of,
)
from asyncqueue_django.api.throttles import (
    CallbackIPThrottle,
    SignalIPThrottle,
    TeamRateThrottle,
    rate_limit_headers,
)
from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import TaskNotFound
from asyncqueue_django.models import ApiKey, Schedule, Task, Team, VaultToken
from asyncqueue_django.states import KeyMode, TaskStatus
from asyncqueue_django.validators import QUEUE_NAME_RE
from asyncqueue_django.values import TaskSpec

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_LONG_POLL = 25  # seconds; below common 30 s proxy and load-balancer idle timeouts


class AsyncQueueViewMixin:
    """Everything a ``/v1`` view shares; none of it inherited from the host's DRF settings."""

    authentication_classes: Sequence[type[BaseAuthentication]] = [ApiKeyAuthentication]
    permission_classes: Sequence[Any] = [HasApiKey]
    parser_classes: Sequence[type[BaseParser]] = [StrictJSONParser]
    renderer_classes: Sequence[type[BaseRenderer]] = [JSONRenderer]
    throttle_classes: Sequence[type[BaseThrottle]] = [TeamRateThrottle]
    versioning_class: type[BaseVersioning] | None = None
    schema: Any = AsyncQueueSchema()

    def get_exception_handler(self) -> Any:
        return exception_handler

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        for name, value in rate_limit_headers(request).items():
            response[name] = value
        return response

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > app_settings.MAX_REQUEST_BYTES:
            raise PayloadTooLarge(
                f"Request body is larger than {app_settings.MAX_REQUEST_BYTES} bytes"
            )
        super().initial(request, *args, **kwargs)  # type: ignore[misc]

    @property
    def team(self) -> Team:
        principal = self.request.user  # type: ignore[attr-defined]
        assert isinstance(principal, TeamPrincipal)
        return principal.team


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: f"Must be an integer between {low} and {high}."}) from None
    if not low <= value <= high:
        raise ValidationError({name: f"Must be between {low} and {high}."})
    return value


def _query_bool(request: Request, name: str) -> bool | None:
    """``?name=true|false`` as a bool; None when absent. Anything else is a 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise ValidationError({name: "Must be true or false."})
    return raw == "true"


@extend_schema_view(
    **{
        name: spectacular_extend_schema(
            parameters=[OpenApiParameter("task_id", OpenApiTypes.UUID, OpenApiParameter.PATH)]
        )
        for name in ("retrieve", "destroy", "cancel", "retry")
    }
)
class TaskViewSet(AsyncQueueViewMixin, viewsets.GenericViewSet[Task]):
    """``/v1/tasks``: create, list, get, cancel (also DELETE), retry."""

    serializer_class = TaskSerializer
    lookup_url_kwarg = "task_id"

    def get_queryset(self) -> QuerySet[Task]:
        return Task.objects.for_team(self.team)

    def _task_id(self) -> uuid.UUID:
        try:
            return uuid.UUID(str(self.kwargs["task_id"]))
        except ValueError:
            raise TaskNotFound() from None

    @extend_schema(
        operation_id="createTask",
        summary="Create a task",
        request=ScheduledTaskCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Same key and same request within the retention window: the "
                "original task (200). Same key, different request: 409.",
            )
        ],
        responses={
            201: OpenApiResponse(
                TaskCreatedOrScheduledEnvelope,
                description='The task; with `schedule`, the schedule (`{"schedule"}`).',
            ),
            200: OpenApiResponse(TaskEnvelope, description="An Idempotency-Key replay."),
            **errors(400, 401, 409, 413, 415, 429, 503),
        },
        examples=PATTERN_EXAMPLES,
    )
    def create(self, request: Request) -> Response:
        serializer = ScheduledTaskCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data.get("schedule") is not None:
            return self._create_schedule(request, serializer.validated_data)
        key = self._idempotency_key(request, serializer.validated_data.get("idempotencyKey"))
        spec = serializer.to_spec()
        trace = tracing.parse(request.headers)
        with tracing.span("asyncqueue.create", *(trace.headers() if trace else ("", ""))):
            _carry_trace(trace, [spec])
            created = services.create_task(
                self.team,
                spec,
                idempotency_key=key,
                fingerprint=serializer.request_fingerprint,
                sandbox=self.sandbox,
                api_key=request.auth if isinstance(request.auth, ApiKey) else None,
            )
        code = http_status.HTTP_201_CREATED if created.created else http_status.HTTP_200_OK
        return Response(_created_body(created), status=code)

    def _create_schedule(self, request: Request, data: dict[str, Any]) -> Response:
        """``POST /v1/tasks`` with ``schedule``: the body (less ``schedule`` and ``timezone``)
        becomes the template of a new schedule → 201 ``{"schedule"}``."""
        if request.headers.get("Idempotency-Key") is not None:
            raise ValidationError(
                {"Idempotency-Key": "Not taken with schedule: each tick is a task of its own."}
            )
        schedule = services.create_schedule(
            self.team,
            data["schedule"],
            data.get("timezone") or "UTC",
            template_of(data),
            sandbox=self.sandbox,
            field_prefix="",
        )
        body = {"schedule": ScheduleSerializer(schedule).data}
        return Response(body, status=http_status.HTTP_201_CREATED)

    @property
    def sandbox(self) -> bool:
        return _is_sandbox(self.request)

    def throttle_cost(self, request: Request) -> int:
        """A batch counts against the rate limit as one request per item."""
        if self.action != "batch":
            return 1
        data = request.data
        items = data.get("tasks") if isinstance(data, dict) else None
        return max(1, min(len(items), MAX_BATCH)) if isinstance(items, list) else 1

    @extend_schema(
        operation_id="createTasks",
        summary="Create 1-100 tasks at once, all or none",
        description="Every item is validated first; if any is invalid the answer is 400 with "
        "`fields` keyed `tasks[<index>].<field>` and nothing is created. Otherwise all are "
        "created in one transaction (each item may carry its own `idempotencyKey`) and "
        "dispatched once it commits. Counts against the rate limit as one request per item.",
        request=BatchCreateSerializer,
        responses={201: BatchCreatedEnvelope, **errors(400, 401, 409, 413, 415, 429, 503)},
    )
    @action(detail=False, methods=["post"])
    def batch(self, request: Request) -> Response:
        if request.headers.get("Idempotency-Key") is not None:
            raise ValidationError(
                {"Idempotency-Key": "A batch takes an idempotencyKey per item instead."}
            )
        serializer = BatchCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.auth if isinstance(request.auth, ApiKey) else None
        trace = tracing.parse(request.headers)
        with tracing.span("asyncqueue.create", *(trace.headers() if trace else ("", ""))):
            _carry_trace(trace, [item.spec for item in serializer.items])
            created = services.create_tasks(
                self.team, serializer.items, sandbox=self.sandbox, api_key=key
            )
        return Response(
            {"tasks": [_created_body(c) for c in created]}, status=http_status.HTTP_201_CREATED
        )

    @staticmethod
    def _idempotency_key(request: Request, from_body: str | None) -> str | None:
        header = request.headers.get("Idempotency-Key")
        if header is not None:
            header = header.strip(" \t")
            if not (1 <= len(header) <= 255 and header.isascii() and header.isprintable()):
                raise ValidationError(
                    {"Idempotency-Key": "Must be 1-255 printable ASCII characters (a UUID works)."}
                )
            try:
                check_idempotency_key(header)
            except ValidationError as exc:
                raise ValidationError({"Idempotency-Key": exc.detail}) from None
            if from_body is not None and from_body != header:
                raise ValidationError(
                    {"idempotencyKey": "Differs from the Idempotency-Key header."}
                )
            return header
        return from_body

    @extend_schema(
        operation_id="listTasks",
        summary="List tasks, newest first",
        parameters=[
            OpenApiParameter(
                "status", str, description="A status, or a comma-separated list of statuses."
            ),
            OpenApiParameter("queue", str),
            OpenApiParameter("waitForSignal", str, enum=["true", "false"]),
            OpenApiParameter(
                "sandbox",
                str,
                enum=["true", "false"],
                description="Only tasks created with a test key (true), or only the others.",
            ),
            OpenApiParameter(
                "limit", int_range(1, MAX_LIMIT), description=f"default {DEFAULT_LIMIT}"
            ),
            OpenApiParameter("offset", int_range(0, 10**9), description="default 0"),
        ],
        responses={200: TaskListEnvelope, **errors(400, 401, 429)},
    )
    def list(self, request: Request) -> Response:
        limit = _query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _query_int(request, "offset", 0, 0, 10**9)
        qs = self.get_queryset()
        statuses = [s for s in request.query_params.get("status", "").split(",") if s]
        bad = [s for s in statuses if s not in TaskStatus.values]
        if bad:
            raise ValidationError(
                {"status": f"Unknown status {bad[0]!r}; use {', '.join(TaskStatus.values)}."}
            )
        if statuses:
            qs = qs.filter(status__in=statuses)
        queue = request.query_params.get("queue")
        if queue:
            if not QUEUE_NAME_RE.fullmatch(queue):
                raise ValidationError({"queue": "Not a valid queue name."})
            qs = qs.filter(queue=queue)
        for name, column in (("waitForSignal", "wait_for_signal"), ("sandbox", "sandbox")):
            flag = _query_bool(request, name)
            if flag is not None:
                qs = qs.filter(**{column: flag})
        total = qs.count()
        page = list(qs.order_by("-created_at", "-id")[offset : offset + limit])
        return Response(
            {
                "tasks": TaskSerializer(cast(Any, page), many=True).data,
                "pagination": {
                    "total": total,
                    "limit": limit,
                    "offset": offset,
                    "hasMore": offset + len(page) < total,
                },
            }
        )

    @extend_schema(
        operation_id="getTask",
        summary="Get a task with its attempts and webhook deliveries",
        parameters=[
            OpenApiParameter(
                "wait",
                int_range(0, MAX_LONG_POLL),
                description=f"Long polling: hold the answer until the status changes, for at "
                f"most this many seconds (0..{MAX_LONG_POLL}).",
            )
        ],
        responses={200: TaskDetailEnvelope, **errors(400, 401, 404, 429)},
    )
    def retrieve(self, request: Request, task_id: str) -> Response:
        """``GET /v1/tasks/{id}[?wait=N]``: with ``wait`` (seconds, at most 25) the answer is held
        until the task's status changes or the time is up (long polling)."""
        wait = _query_int(request, "wait", 0, 0, MAX_LONG_POLL)
        pk = self._task_id()
        if wait:
            self._wait_for_change(pk, wait)
        task = (
            self.get_queryset()
            .filter(pk=pk)
            .prefetch_related("attempts", "webhook_deliveries")
            .first()
        )
        if task is None:
            raise TaskNotFound()
        return Response({"task": TaskDetailSerializer(task).data})

    def _wait_for_change(self, pk: uuid.UUID, wait: int) -> None:
        """Hold the request until the task's status changes, for at most ``wait`` seconds.

        Returns at once for a terminal task. The waiting itself is done by the process's
        long-poll watcher (one query per 0.2 s for all waiting requests together); this
        request gives its database connection back while it waits, so it holds a server
        thread, not a connection.
        """
        initial = (
            self.get_queryset().filter(pk=pk).order_by().values_list("status", flat=True).first()
        )
        if initial is None:
            raise TaskNotFound()
        if states.is_terminal(initial):
            return
        if not connection.in_atomic_block:  # ATOMIC_REQUESTS keeps it; nothing to give back
            connection.close()
        watcher.wait(pk, initial, timeout=wait)

    @extend_schema(
        operation_id="deleteTask",
        summary="Cancel a task (same as POST .../cancel)",
        responses={200: TaskEnvelope, **errors(401, 403, 404, 409, 429)},
    )
    def destroy(self, request: Request, task_id: str) -> Response:
        """``DELETE /v1/tasks/{id}``: the same as cancel."""
        return self._cancel()

    @extend_schema(
        operation_id="cancelTask",
        summary="Cancel a pending, delayed or waiting task",
        request=None,
        responses={200: TaskEnvelope, **errors(401, 403, 404, 409, 429)},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, task_id: str) -> Response:
        return self._cancel()

    def _cancel(self) -> Response:
        task = services.cancel_task(self.team, self._live_guard())
        return Response({"task": TaskSerializer(task).data})

    def _live_guard(self) -> uuid.UUID:
        """The task id of the path, once a test key is known to be changing a sandbox task."""
        pk = self._task_id()
        if _is_sandbox(self.request) and not services.get_task(self.team, pk).sandbox:
            raise exceptions.TestKeyCannotChangeLive()
        return pk

    @extend_schema(
        operation_id="retryTask",
        summary="Run a failed or timed-out task again",
        request=None,
        responses={200: TaskEnvelope, **errors(401, 403, 404, 409, 429)},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, task_id: str) -> Response:
        task = services.retry_task(self.team, self._live_guard())
        return Response({"task": TaskSerializer(task).data})


def _is_sandbox(request: Request) -> bool:
    """Tasks (and schedules) created with a test key are sandbox tasks."""
    key = request.auth
    return isinstance(key, ApiKey) and key.mode == KeyMode.TEST


def _refuse_live_schedule(request: Request, team: Team, schedule_id: str) -> None:
    """A test key changes only sandbox schedules: a live schedule's ticks make real calls."""
    if _is_sandbox(request) and not services.get_schedule(team, schedule_id).sandbox:
        raise exceptions.TestKeyCannotChangeLive()


def _carry_trace(trace: tracing.TraceContext | None, specs: list[TaskSpec]) -> None:
    """Store the request's W3C trace context on every task it creates, so each of their
    outbound calls carries it. An invalid ``traceparent``/``tracestate`` was already dropped by
    ``tracing.parse`` (``trace`` is None): tracing never makes a create fail. With OpenTelemetry
    recording, what is stored is the create span; else the context as received."""
    if trace is None:
        return
    sent = tracing.outbound_headers(trace.traceparent, trace.tracestate)
    for spec in specs:
        spec.traceparent = sent["traceparent"]
        spec.tracestate = sent.get("tracestate", "")


def _created_body(created: services.CreatedTask) -> dict[str, Any]:
    body: dict[str, Any] = {"task": TaskSerializer(created.task).data}
    if created.signal_token:
        body["signalToken"] = created.signal_token
    if created.callback_url:
        # Shown once, like the signal token: only the id's digest is stored.
        body["task"]["callbackId"] = created.callback_id
        body["callbackUrl"] = created.callback_url
    return body


@extend_schema_view(
    destroy=spectacular_extend_schema(
        parameters=[OpenApiParameter("token_id", str, OpenApiParameter.PATH)]
    )
)
class TokenViewSet(AsyncQueueViewMixin, viewsets.GenericViewSet[VaultToken]):
    """``/v1/tokens``: the team's Token Vault (create, list, revoke). Values go in, never out."""

    serializer_class = TokenSerializer
    lookup_url_kwarg = "token_id"

    def get_queryset(self) -> QuerySet[VaultToken]:
        return cast(QuerySet[VaultToken], services.list_tokens(self.team))

    @extend_schema(
        operation_id="createToken",
        summary="Store a secret in the Token Vault",
        description="The value is encrypted at rest and never shown again. A task header whose "
        "value is exactly the returned id (`tok_…`) is sent with the secret in its place.",
        request=TokenCreateSerializer,
        responses={201: TokenEnvelope, **errors(400, 401, 413, 415, 429, 503)},
    )
    def create(self, request: Request) -> Response:
        serializer = TokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        token = services.create_token(self.team, data["name"], data["value"])
        return Response({"token": TokenSerializer(token).data}, status=http_status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="listTokens",
        summary="List the team's tokens that are not revoked (never their values)",
        responses={200: TokenListEnvelope, **errors(400, 401, 429)},
    )
    def list(self, request: Request) -> Response:
        tokens = list(self.get_queryset())
        return Response({"tokens": TokenSerializer(cast(Any, tokens), many=True).data})

    @extend_schema(
        operation_id="revokeToken",
        summary="Revoke a token: tasks that use it fail their next attempt, not retried",
        responses={200: RevokedTokenEnvelope, **errors(401, 403, 404, 429)},
    )
    def destroy(self, request: Request, token_id: str) -> Response:
        if _is_sandbox(request):  # live tasks may use it: revoking fails their next attempt
            raise exceptions.TestKeyCannotChangeLive()
        token = services.revoke_token(self.team, str(token_id))
        return Response({"token": RevokedTokenSerializer(token).data})


SCHEDULE_ID = [OpenApiParameter("schedule_id", OpenApiTypes.UUID, OpenApiParameter.PATH)]


@extend_schema_view(
    **{
        name: spectacular_extend_schema(parameters=SCHEDULE_ID)
        for name in ("retrieve", "partial_update", "destroy", "pause", "resume")
    }
)
class ScheduleViewSet(AsyncQueueViewMixin, viewsets.GenericViewSet[Schedule]):
    """``/v1/schedules``: cron schedules (create, list, get, change, delete, pause, resume).
    Each tick of a schedule creates a task from its template, as ``POST /v1/tasks`` would."""

    serializer_class = ScheduleSerializer
    lookup_url_kwarg = "schedule_id"

    def get_queryset(self) -> QuerySet[Schedule]:
        return cast(QuerySet[Schedule], services.list_schedules(self.team))

    @staticmethod
    def _answer(schedule: Schedule, code: int = http_status.HTTP_200_OK) -> Response:
        return Response({"schedule": ScheduleSerializer(schedule).data}, status=code)

    @extend_schema(
        operation_id="createSchedule",
        summary="Create a schedule: a task created at every tick of a cron expression",
        description="The task template is validated as `POST /v1/tasks` validates a body "
        "(errors named `task.<field>`); `delay`, `delayUntil`, `idempotencyKey` and "
        "`waitForSignal: true` are refused in it. Ticks are read in `timezone` (default UTC).",
        request=ScheduleCreateSerializer,
        responses={201: ScheduleEnvelope, **errors(400, 401, 409, 413, 415, 429)},
        examples=SCHEDULE_EXAMPLES,
    )
    def create(self, request: Request) -> Response:
        serializer = ScheduleCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        schedule = services.create_schedule(
            self.team,
            data["cron"],
            data["timezone"],
            template_of(data["task"]),
            paused=data["paused"],
            sandbox=_is_sandbox(request),
        )
        return self._answer(schedule, http_status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="listSchedules",
        summary="List the team's schedules, newest first",
        responses={200: ScheduleListEnvelope, **errors(401, 429)},
    )
    def list(self, request: Request) -> Response:
        schedules = list(self.get_queryset())
        return Response({"schedules": ScheduleSerializer(cast(Any, schedules), many=True).data})

    @extend_schema(
        operation_id="getSchedule",
        summary="Get a schedule",
        responses={200: ScheduleEnvelope, **errors(401, 404, 429)},
    )
    def retrieve(self, request: Request, schedule_id: str) -> Response:
        return self._answer(services.get_schedule(self.team, schedule_id))

    @extend_schema(
        operation_id="updateSchedule",
        summary="Change a schedule's cron, time zone, template or paused",
        description="A new cron or time zone counts ticks from now on. `task` replaces the "
        "template as a whole.",
        request=ScheduleUpdateSerializer,
        responses={200: ScheduleEnvelope, **errors(400, 401, 403, 404, 413, 415, 429)},
    )
    def partial_update(self, request: Request, schedule_id: str) -> Response:
        serializer = ScheduleUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        _refuse_live_schedule(request, self.team, schedule_id)
        schedule = services.update_schedule(
            self.team,
            schedule_id,
            expression=data.get("cron"),
            zone_name=data.get("timezone"),
            template=template_of(data["task"]) if "task" in data else None,
            paused=data.get("paused"),
        )
        return self._answer(schedule)

    @extend_schema(
        operation_id="deleteSchedule",
        summary="Delete a schedule and its beat entry (the tasks it created stay)",
        responses={200: ScheduleEnvelope, **errors(401, 403, 404, 429)},
    )
    def destroy(self, request: Request, schedule_id: str) -> Response:
        _refuse_live_schedule(request, self.team, schedule_id)
        schedule = services.delete_schedule(self.team, schedule_id)
        return Response({"schedule": {**ScheduleSerializer(schedule).data, "nextRunAt": None}})

    @extend_schema(
        operation_id="pauseSchedule",
        summary="Pause a schedule: no tick runs until it is resumed",
        request=None,
        responses={200: ScheduleEnvelope, **errors(401, 403, 404, 429)},
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, schedule_id: str) -> Response:
        _refuse_live_schedule(request, self.team, schedule_id)
        return self._answer(services.pause_schedule(self.team, schedule_id))

    @extend_schema(
        operation_id="resumeSchedule",
        summary="Resume a schedule from its next tick (ticks missed while paused do not run)",
        request=None,
        responses={200: ScheduleEnvelope, **errors(401, 403, 404, 429)},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, schedule_id: str) -> Response:
        _refuse_live_schedule(request, self.team, schedule_id)
        return self._answer(services.resume_schedule(self.team, schedule_id))


@extend_schema_view(
    **{
        name: spectacular_extend_schema(
            parameters=[
                OpenApiParameter(
                    "name",
                    OpenApiTypes.STR,
                    OpenApiParameter.PATH,
                    pattern=QUEUE_NAME_RE.pattern,
                    description="The queue's name (as tasks give it in `queue`).",
                )
            ]
        )
        for name in ("pause", "resume")
    }
)
class QueueViewSet(AsyncQueueViewMixin, viewsets.ViewSet):
    """``/v1/queues``: the team's queues (open tasks by status) and their pause switch.

    Scoped to the team: counts are of its own tasks, and a pause stops only its own tasks on
    that queue. An operator's pause (admin, ``asyncqueue_queues``) stops every team's and
    shows here as ``paused`` too; only the operator lifts it.
    """

    lookup_field = "name"
    # Any one path segment routes here, so a malformed name is a 400 naming it, not a 404.
    lookup_value_regex = "[^/]+"

    @extend_schema(
        operation_id="listQueues",
        summary="The team's queues: open tasks by status, oldest pending age, paused",
        responses={200: QueueListEnvelope, **errors(401, 429)},
    )
    def list(self, request: Request) -> Response:
        queues = services.list_queues(self.team)
        return Response({"queues": QueueSerializer(queues, many=True).data})

    @extend_schema(
        operation_id="pauseQueue",
        summary="Pause the queue for the team: tasks are accepted, none starts until resumed",
        description="Idempotent. Tasks already running finish; waiting tasks still take "
        "signals and time out.",
        request=None,
        responses={200: QueueEnvelope, **errors(400, 401, 403, 429)},
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, name: str) -> Response:
        if _is_sandbox(request):  # a queue holds the team's live tasks too
            raise exceptions.TestKeyCannotChangeLive()
        queue = services.pause_queue(self.team, _queue_name(name))
        return Response({"queue": QueueSerializer(queue).data})

    @extend_schema(
        operation_id="resumeQueue",
        summary="Resume the queue for the team: its due tasks start at once",
        description="Idempotent. An operator's pause of the whole queue stays (`paused` true).",
        request=None,
        responses={200: QueueEnvelope, **errors(400, 401, 403, 429)},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, name: str) -> Response:
        if _is_sandbox(request):
            raise exceptions.TestKeyCannotChangeLive()
        queue = services.resume_queue(self.team, _queue_name(name))
        return Response({"queue": QueueSerializer(queue).data})


def _queue_name(name: str) -> str:
    """The queue name of a path, or a 400 naming ``name``."""
    try:
        return validators.check_queue_name(name)
    except validators.InvalidInput as exc:
        raise ValidationError({"name": exc.message}) from None


class NotFoundView(AsyncQueueViewMixin, APIView):
    """JSON 404 for any other path under ``/v1`` (instead of the host's HTML page)."""

    schema = None  # not part of the API: left out of the OpenAPI document

    authentication_classes = []
    permission_classes = []

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        self.args, self.kwargs, self.request = args, kwargs, self.initialize_request(request)
        self.headers = self.default_response_headers
        response = error_response("Not found", "not_found", 404)
        return self.finalize_response(self.request, response, *args, **kwargs)


class SignalView(AsyncQueueViewMixin, APIView):
    """``POST /v1/signals/{token}``: the token is the credential; no API key."""

    authentication_classes: Sequence[type[BaseAuthentication]] = []
    permission_classes: Sequence[Any] = []
    throttle_classes: Sequence[type[BaseThrottle]] = [SignalIPThrottle]

    @extend_schema(
        operation_id="sendSignal",
        summary="Complete or fail a waiting task (the token is the credential)",
        request=SignalSerializer,
        auth=[],
        responses={
            200: OpenApiResponse(TaskEnvelope, description="Applied (or an exact replay)."),
            202: OpenApiResponse(
                TaskEnvelope, description="Recorded early; applied when the callback succeeds."
            ),
            **errors(400, 404, 409, 413, 415, 429),
        },
        examples=[
            OpenApiExample(
                "Payment confirmed",
                value={"status": "completed", "result": {"paymentId": "pi_123"}},
                request_only=True,
            ),
            OpenApiExample(
                "Rejected", value={"status": "failed", "error": "card declined"}, request_only=True
            ),
        ],
    )
    def post(self, request: Request, token: str) -> Response:
        serializer = SignalSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        outcome = services.signal_task(
            token, data["status"], result=data.get("result"), error=data.get("error")
        )
        code = http_status.HTTP_200_OK if outcome.applied else http_status.HTTP_202_ACCEPTED
        return Response({"task": TaskSerializer(outcome.task).data}, status=code)


class HeartbeatView(SignalView):
    """``POST /v1/signals/{token}/heartbeat``: push ``waitDeadline`` out."""

    @extend_schema(
        operation_id="heartbeat",
        summary="Push a waiting task's waitDeadline out",
        request=HeartbeatSerializer,
        auth=[],
        responses={200: TaskEnvelope, **errors(400, 404, 409, 413, 415, 429)},
    )
    def post(self, request: Request, token: str) -> Response:
        serializer = HeartbeatSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = services.heartbeat(token, serializer.validated_data["extendBy"])
        return Response({"task": TaskSerializer(task).data})


class CallbackView(AsyncQueueViewMixin, APIView):
    """``POST /v1/callbacks/{callbackId}``: a provider calling a task's one-time callback URL.
    No API key (the id is the credential), any body up to ``MAX_REQUEST_BYTES``, limited per
    client IP (``CALLBACK_RATE_LIMIT``)."""

    authentication_classes: Sequence[type[BaseAuthentication]] = []
    permission_classes: Sequence[Any] = []
    parser_classes: Sequence[type[BaseParser]] = []  # the body is read raw, never parsed here
    throttle_classes: Sequence[type[BaseThrottle]] = [CallbackIPThrottle]

    @extend_schema(
        operation_id="providerCallback",
        summary="A provider reports a task's job done (the callback id is the credential)",
        description="Any body (JSON or not) up to the request size limit. The task becomes "
        "`completed` with `result = {statusCode: 200, headers, body, duration: 0}` (the "
        "request's headers, secrets redacted; the body parsed when it is JSON). A call that "
        "arrives while the task's own call is still running is recorded (202) and applied "
        "when that call succeeds.",
        request={"*/*": OpenApiTypes.BINARY},
        auth=[],
        responses={
            200: OpenApiResponse(TaskEnvelope, description="Applied (or an exact replay)."),
            202: OpenApiResponse(
                TaskEnvelope, description="Recorded early; applied when the call succeeds."
            ),
            **errors(404, 409, 413, 429),
        },
    )
    def post(self, request: Request, callback_id: str) -> Response:
        limit = app_settings.MAX_REQUEST_BYTES
        body = request._request.read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
        headers = dict(request.headers.items())
        outcome = services.receive_callback(callback_id, headers, body)
        code = http_status.HTTP_200_OK if outcome.applied else http_status.HTTP_202_ACCEPTED
        return Response({"task": TaskSerializer(outcome.task).data}, status=code)


class ProvidersView(AsyncQueueViewMixin, APIView):
    """``GET /v1/providers``: the provider templates a task can name (no API key; limited per
    client IP like signals)."""

    authentication_classes: Sequence[type[BaseAuthentication]] = []
    permission_classes: Sequence[Any] = []
    throttle_classes: Sequence[type[BaseThrottle]] = [SignalIPThrottle]

    @extend_schema(
        operation_id="listProviders",
        summary="The provider templates a task's `provider` may name",
        auth=[],
        responses={200: ProviderListEnvelope, **errors(429)},
    )
    def get(self, request: Request) -> Response:
        return Response(
            {"providers": [providers.provider_data(p) for p in providers.PROVIDERS.values()]}
        )
