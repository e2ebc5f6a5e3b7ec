"""Serializers: strict input validation (camelCase, aliases), and the shape of the output.

Input and output are separate classes. Input is strict: wrong JSON types are refused rather
than coerced (``"5"`` is not an integer, ``"true"`` is not a boolean), unknown fields are
named in a 400, every limit comes from ``app_settings`` and every shared rule from
``validators.py``. Output serializers declare the fields for the OpenAPI document and render
through ``representation.py`` (the same renderer the worker uses for webhook bodies).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import re
from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from asyncqueue_django import cron, providers, representation, services, urlpolicy, validators
from asyncqueue_django.api.exceptions import flatten_errors
from asyncqueue_django.conf import app_settings
from asyncqueue_django.models import Task
from asyncqueue_django.states import AttemptOutcome, RetryBackoff, SignalStatus, TaskStatus
from asyncqueue_django.validators import InvalidInput
from asyncqueue_django.values import FlowControl, TaskSpec, fingerprint_of, spec_of_body

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

#: Alias → canonical field name (the README's "Creating a task" table).
ALIASES = {
    "callbackUrl": "targetUrl",
    "webhook_url": "targetUrl",
    "webhookUrl": "onCompleteUrl",
    "retries": "maxRetries",
    "max_retries": "maxRetries",
}

# Headers the service sets or that describe the connection, not the request.
FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$")
MAX_HEADER_VALUE = 8192


def check(rule: Any, value: Any) -> Any:
    """Apply a rule of ``validators.py``, its refusal as a DRF validation error."""
    try:
        return rule(value)
    except InvalidInput as exc:
        raise serializers.ValidationError(exc.message) from None


def check_idempotency_key(value: str) -> str:
    return str(check(validators.check_idempotency_key, value))


def unknown_field(name: str, known: list[str]) -> str:
    """The message for a body field we do not know, suggesting the closest known name
    (``targetURL`` → ``targetUrl``), else listing them."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return f'Unknown field; did you mean "{by_lower[close[0]]}"?'
    return f"Unknown field; the fields are {', '.join(known)}."


def _refuse_unknown(data: dict[str, Any], fields: list[str]) -> dict[str, list[str]]:
    known = [*fields, *(alias for alias, canonical in ALIASES.items() if canonical in fields)]
    return {name: [unknown_field(name, known)] for name in sorted(set(data) - set(fields))}


class ObjectBodySerializer(serializers.Serializer[Any]):
    """A request body that must be a JSON object of the declared fields only (an unknown one is
    named, with the closest known name)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["Request body must be a JSON object."]})
        unknown = _refuse_unknown(data, list(self.fields))
        if unknown:
            raise serializers.ValidationError(unknown)
        return super().to_internal_value(data)


# --------------------------------------------------------------------------------------------
# Strict fields
# --------------------------------------------------------------------------------------------


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, float) and data.is_integer():
            data = int(data)  # 5.0 is an integer in JSON (and in JSON Schema); "5" is not
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictChoiceField(serializers.ChoiceField):
    """A choice among strings; a wrong one is answered with the valid ones."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or data not in self.choice_strings_to_values:
            valid = ", ".join(f'"{c}"' for c in self.choice_strings_to_values)
            shown = json.dumps(data) if isinstance(data, str) else "this value"
            raise serializers.ValidationError(f"{shown} is not valid; use one of {valid}.")
        return super().to_internal_value(data)


class TargetURLField(StrictCharField):
    """An http(s) URL the SSRF guard lets through (checked at create time and again at call)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", urlpolicy.MAX_URL_LENGTH)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            # The callback URL placeholder is checked as the URL it becomes.
            urlpolicy.check_url(providers.fill_url_placeholder(value, SAMPLE_CALLBACK_URL))
        except urlpolicy.UnsafeURL as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


#: What the placeholder becomes when a target URL is checked at create time.
SAMPLE_CALLBACK_URL = "https://callbacks.example/v1/callbacks/" + "0" * 64


class AnyJSONField(serializers.JSONField):
    """Any JSON value, including ``null`` (which counts as "not given")."""


class FlowControlField(serializers.JSONField):
    """``flowControl``: ``{"key", "parallelism"?, "rate"?, "period"?}`` → ``FlowControl``
    (``validators.check_flow_control``); an error names the member (``flowControl.rate``)."""

    def to_internal_value(self, data: Any) -> Any:
        try:
            return validators.check_flow_control(data)
        except validators.InvalidFlowControl as exc:
            raise serializers.ValidationError({exc.field: [exc.message]}) from None


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------


def _clone(field: serializers.Field[Any, Any, Any, Any]) -> serializers.Field[Any, Any, Any, Any]:
    """A fresh, unbound copy of a declared field (see :class:`InputSerializer`)."""
    if isinstance(field, serializers.BaseSerializer):
        return copy.deepcopy(field)  # a nested serializer caches bound fields of its own
    new = copy.copy(field)
    child = getattr(field, "child", None)
    if isinstance(child, serializers.Field):
        fresh = _clone(child)
        fresh.source = child._kwargs.get("source")  # type: ignore[attr-defined]  # unbind
        fresh.bind(field_name="", parent=new)  # type: ignore[arg-type]
        new.child = fresh  # type: ignore[attr-defined]
    return new


# A request-body serializer whose fields are cloned shallowly. DRF gives every serializer
# instance its own copy of the declared fields by ``copy.deepcopy``, which calls each field's
# ``__init__`` again: about 0.7 ms of a ``POST /v1/tasks`` request for its 17 fields, a sixth
# of the request. The fields here keep no state of their own after construction except what
# ``bind()`` sets on the copy (name, parent, source), and their validator lists are built once
# and only read, so a shallow copy per instance (with a fresh child for ``DictField`` and
# ``ListField``) keeps instances as independent for a small part of the cost. (No docstring:
# drf-spectacular would publish it as every subclass's schema description.)
class InputSerializer(serializers.Serializer[Any]):
    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        return {name: _clone(field) for name, field in self._declared_fields.items()}


class TaskCreateSerializer(InputSerializer):
    targetUrl = TargetURLField()
    method = StrictCharField(required=False, default="POST")
    headers = serializers.DictField(
        child=StrictCharField(allow_blank=True, trim_whitespace=False), required=False
    )
    payload = AnyJSONField(required=False, allow_null=True)
    body = StrictCharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False)
    timeout = StrictIntegerField(required=False, allow_null=True)
    delayUntil = serializers.DateTimeField(required=False, allow_null=True)
    delay = StrictIntegerField(required=False, allow_null=True, min_value=0)
    maxRetries = StrictIntegerField(required=False, allow_null=True, min_value=0)
    retryBackoff = StrictChoiceField(choices=RetryBackoff.choices, required=False)
    priority = StrictIntegerField(required=False, min_value=1, max_value=10)
    queue = StrictCharField(required=False, max_length=100)
    waitForSignal = StrictBooleanField(required=False)
    maxWaitTime = StrictIntegerField(required=False, allow_null=True, min_value=1)
    onCompleteUrl = TargetURLField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False)
    idempotencyKey = StrictCharField(required=False, max_length=255, min_length=1)
    provider = StrictCharField(
        required=False,
        allow_null=True,
        help_text="A provider template id (GET /v1/providers): after a successful submit call "
        "the task polls the provider with the template's pollConfig.",
    )
    pollConfig = AnyJSONField(
        required=False,
        allow_null=True,
        help_text="How to poll the provider after a successful submit call; overrides the "
        "provider template key by key.",
    )
    flowControl = FlowControlField(required=False, allow_null=True)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["Request body must be a JSON object."]})
        data = dict(data)
        errors: dict[str, list[str]] = {}
        for alias, canonical in ALIASES.items():
            if alias in data:
                if canonical in data:
                    errors[alias] = [f"Give either {alias} or {canonical}, not both."]
                    continue
                data[canonical] = data.pop(alias)
        for name, messages in _refuse_unknown(data, list(self.fields)).items():
            errors.setdefault(name, messages)  # an alias given twice is not "unknown"
        if errors:
            raise serializers.ValidationError(errors)
        # The request as sent (aliases resolved): what an Idempotency-Key replay must match.
        self.request_fingerprint = fingerprint_of(
            {k: v for k, v in data.items() if k != "idempotencyKey"}
        )
        return super().to_internal_value(data)

    def validate_method(self, value: str) -> str:
        method = value.upper()
        if method not in METHODS:
            raise serializers.ValidationError(f"Must be one of {', '.join(METHODS)}.")
        return method

    def validate_headers(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > app_settings.MAX_HEADERS:
            raise serializers.ValidationError(
                f"At most {app_settings.MAX_HEADERS} headers are allowed."
            )
        seen: set[str] = set()
        for name, header_value in value.items():
            lower = name.lower()
            if not HEADER_NAME_RE.fullmatch(name):  # not match: '$' allows a trailing \n
                raise serializers.ValidationError(f"{name!r} is not a valid header name.")
            if lower in FORBIDDEN_HEADERS or lower.startswith(("x-asyncqueue-", "webhook-")):
                raise serializers.ValidationError(f"Header {name!r} may not be set.")
            if lower in seen:
                raise serializers.ValidationError(f"Header {name!r} is given twice.")
            seen.add(lower)
            problem = validators.header_value_problem(header_value)
            if problem:
                raise serializers.ValidationError(f"Header {name!r} {problem}.")
            if len(header_value) > MAX_HEADER_VALUE:
                raise serializers.ValidationError(
                    f"Header {name!r} is longer than {MAX_HEADER_VALUE} characters."
                )
        return value

    def validate_timeout(self, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= app_settings.MAX_TIMEOUT:
            raise serializers.ValidationError(
                f"Must be between 1 and {app_settings.MAX_TIMEOUT} seconds."
            )
        return value

    def validate_maxRetries(self, value: int | None) -> int | None:
        if value is not None and value > app_settings.MAX_RETRIES:
            raise serializers.ValidationError(f"Must be between 0 and {app_settings.MAX_RETRIES}.")
        return value

    def validate_maxWaitTime(self, value: int | None) -> int | None:
        if value is not None and value > app_settings.MAX_WAIT_TIME:
            raise serializers.ValidationError(
                f"Must be between 1 and {app_settings.MAX_WAIT_TIME} seconds."
            )
        return value

    def validate_delay(self, value: int | None) -> int | None:
        if value is not None and value > app_settings.MAX_DELAY:
            raise serializers.ValidationError(f"Must be at most {app_settings.MAX_DELAY} seconds.")
        return value

    def validate_queue(self, value: str) -> str:
        return str(check(validators.check_queue, value))

    def validate_idempotencyKey(self, value: str) -> str:
        return check_idempotency_key(value)

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, Any]:
        return dict(check(validators.check_metadata, value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        now = timezone.now()
        try:
            validators.check_placeholder_use(attrs.get("headers") or {}, attrs.get("onCompleteUrl"))
        except validators.PlaceholderMisplaced as exc:
            raise serializers.ValidationError({exc.field: exc.message}) from None
        provider, poll = attrs.get("provider"), attrs.get("pollConfig")
        if provider is not None or poll is not None:
            if attrs.get("waitForSignal"):
                raise serializers.ValidationError(
                    {"waitForSignal": "A polling task polls instead of waiting; give one."}
                )
            try:
                attrs["pollConfig"] = providers.check_poll_config(poll, provider, _check_url)
            except providers.PollConfigError as exc:
                raise serializers.ValidationError({exc.field: exc.message}) from None
        payload, body = attrs.get("payload"), attrs.get("body")
        if payload is not None and body is not None:
            raise serializers.ValidationError({"body": "Give either payload or body, not both."})
        if payload is not None:
            try:
                validators.check_json(payload, app_settings.MAX_BODY_BYTES)
            except InvalidInput as exc:
                raise serializers.ValidationError({"payload": exc.message}) from None
        if body is not None and len(body.encode("utf-8")) > app_settings.MAX_BODY_BYTES:
            raise serializers.ValidationError(
                {"body": f"Must be at most {app_settings.MAX_BODY_BYTES} bytes."}
            )
        delay, delay_until = attrs.get("delay"), attrs.get("delayUntil")
        if delay is not None and delay_until is not None:
            raise serializers.ValidationError({"delay": "Give either delay or delayUntil."})
        if delay is not None:
            attrs["delayUntil"] = now + timedelta(seconds=delay) if delay else None
        elif delay_until is not None and delay_until > now + timedelta(
            seconds=app_settings.MAX_DELAY
        ):
            raise serializers.ValidationError(
                {"delayUntil": f"Must be at most {app_settings.MAX_DELAY} seconds ahead."}
            )
        return attrs

    def to_spec(self) -> TaskSpec:
        return spec_of(self.validated_data)


def _check_url(url: str) -> None:
    urlpolicy.check_url(url, resolve_host=False)


def spec_of(data: Any) -> TaskSpec:
    """The ``TaskSpec`` of validated create data."""
    return spec_of_body(data)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


class UTCDateTimeField(serializers.DateTimeField):
    """An output date: always ISO 8601 in UTC (``…Z``), whatever the host's ``TIME_ZONE`` and
    ``REST_FRAMEWORK["DATETIME_FORMAT"]`` say."""

    def to_representation(self, value: Any) -> Any:
        return representation.iso_utc(value)


NULLABLE_DATETIME = UTCDateTimeField(allow_null=True)
NULLABLE_STRING = serializers.CharField(allow_null=True)


class FlowControlSerializer(serializers.Serializer[Any]):
    """Tasks of one team sharing `key` start at most `parallelism` at once and at most
    `rate` per `period` seconds; a task over the limit waits (it is never failed for it)."""

    key = serializers.CharField(max_length=100)
    parallelism = serializers.IntegerField(min_value=1, allow_null=True)
    rate = serializers.IntegerField(min_value=1, allow_null=True)
    period = serializers.IntegerField(
        min_value=1, max_value=86_400, allow_null=True, help_text="Seconds (null without rate)."
    )


class EarlySignalSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=SignalStatus.choices)
    result = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class AttemptSerializer(serializers.Serializer[Any]):
    number = serializers.IntegerField()
    startedAt = UTCDateTimeField(source="started_at")
    duration = serializers.IntegerField(source="duration_ms", allow_null=True)
    statusCode = serializers.IntegerField(source="status_code", allow_null=True)
    error = serializers.CharField(allow_null=True)
    outcome = serializers.ChoiceField(choices=AttemptOutcome.choices)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return representation.attempt_data(instance)


class TaskSerializer(serializers.Serializer[Task]):
    """The public task object (the README's "The task object")."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=TaskStatus.choices)
    targetUrl = serializers.CharField(source="target_url")
    method = serializers.CharField()
    headers = serializers.SerializerMethodField()
    payload = serializers.JSONField()
    body = serializers.CharField(allow_null=True)
    timeout = serializers.IntegerField()
    delayUntil = UTCDateTimeField(source="delay_until", allow_null=True)
    priority = serializers.IntegerField()
    queue = serializers.CharField()
    maxRetries = serializers.IntegerField(source="max_retries")
    retryBackoff = serializers.ChoiceField(source="retry_backoff", choices=RetryBackoff.choices)
    retryCount = serializers.IntegerField(source="retry_count")
    nextAttemptAt = serializers.SerializerMethodField()
    waitForSignal = serializers.BooleanField(source="wait_for_signal")
    maxWaitTime = serializers.IntegerField(source="max_wait_time")
    waitDeadline = UTCDateTimeField(source="wait_deadline", allow_null=True)
    onCompleteUrl = serializers.CharField(source="on_complete_url", allow_null=True)
    metadata = serializers.JSONField()
    sandbox = serializers.BooleanField(
        help_text="Created with a test key: the target is never called."
    )
    provider = serializers.CharField(allow_null=True, help_text="The provider template used.")
    pollConfig = serializers.JSONField(
        allow_null=True, help_text="How the task polls its provider (null: it does not)."
    )
    pollUrl = serializers.CharField(
        allow_null=True, help_text="The poll URL resolved from the submit answer."
    )
    pollCount = serializers.IntegerField(help_text="Provider polls made.")
    lastPolledAt = UTCDateTimeField(allow_null=True)
    lastPollStatusCode = serializers.IntegerField(allow_null=True)
    lastPollError = serializers.CharField(
        allow_null=True, help_text="Why the last poll could not be read (it is retried)."
    )
    nextPollAt = UTCDateTimeField(allow_null=True, help_text="Only while polling.")
    result = serializers.JSONField()
    error = serializers.SerializerMethodField()
    idempotencyKey = serializers.CharField(source="idempotency_key", allow_null=True)
    flowControl = serializers.SerializerMethodField()
    signalReceivedAt = UTCDateTimeField(source="signal_received_at", allow_null=True)
    earlySignal = serializers.SerializerMethodField()
    createdAt = UTCDateTimeField(source="created_at")
    updatedAt = UTCDateTimeField(source="updated_at")
    startedAt = UTCDateTimeField(source="started_at", allow_null=True)
    completedAt = UTCDateTimeField(source="completed_at", allow_null=True)

    def to_representation(self, instance: Task) -> dict[str, Any]:
        return representation.task_data(instance)

    # The method fields below only describe the schema; ``representation`` renders them.

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_headers(self, task: Task) -> dict[str, Any]:
        raise NotImplementedError

    @extend_schema_field(NULLABLE_DATETIME)
    def get_nextAttemptAt(self, task: Task) -> str | None:
        """Only while the task waits to run."""
        raise NotImplementedError

    @extend_schema_field(NULLABLE_STRING)
    def get_error(self, task: Task) -> str | None:
        raise NotImplementedError

    @extend_schema_field(FlowControlSerializer(allow_null=True))
    def get_flowControl(self, task: Task) -> dict[str, Any] | None:
        """The task's flow-control key and limits (null: none)."""
        raise NotImplementedError

    @extend_schema_field(EarlySignalSerializer(allow_null=True))
    def get_earlySignal(self, task: Task) -> dict[str, Any] | None:
        """A signal that arrived before the callback finished (kept after it is applied)."""
        raise NotImplementedError


class WebhookDeliverySerializer(serializers.Serializer[Any]):
    """One onComplete event of a task and where its delivery stands."""

    id = serializers.UUIDField()
    event = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField(source="attempt_count")
    lastStatusCode = serializers.IntegerField(source="last_status_code", allow_null=True)
    lastError = serializers.SerializerMethodField()
    createdAt = UTCDateTimeField(source="created_at")
    deliveredAt = UTCDateTimeField(source="delivered_at", allow_null=True)
    nextAttemptAt = serializers.SerializerMethodField()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return representation.delivery_data(instance)

    @extend_schema_field(NULLABLE_STRING)
    def get_lastError(self, delivery: Any) -> str | None:
        raise NotImplementedError

    @extend_schema_field(NULLABLE_DATETIME)
    def get_nextAttemptAt(self, delivery: Any) -> str | None:
        """Only while the event waits to be delivered."""
        raise NotImplementedError


class TaskDetailSerializer(TaskSerializer):
    attempts = AttemptSerializer(many=True, source="attempts.all")
    webhookDeliveries = WebhookDeliverySerializer(many=True, source="webhook_deliveries.all")

    def to_representation(self, instance: Task) -> dict[str, Any]:
        return representation.task_detail_data(instance)


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------

#: Create fields a schedule's task template refuses, and why.
NOT_IN_TEMPLATES = {
    "delay": "A scheduled task runs at its tick; schedule it later instead.",
    "delayUntil": "A scheduled task runs at its tick; schedule it later instead.",
    "idempotencyKey": "Each tick creates its own task; the tick is its key.",
}


def _refuse_in_template(data: dict[str, Any]) -> None:
    refused = {k: [m] for k, m in NOT_IN_TEMPLATES.items() if data.get(k) is not None}
    if data.get("waitForSignal") is True:
        refused["waitForSignal"] = [
            "The signal token of a scheduled task would be shown to no one."
        ]
    if refused:
        raise serializers.ValidationError(refused)


class ScheduleTaskSerializer(TaskCreateSerializer):
    """A schedule's task template: a create body, validated as ``POST /v1/tasks`` validates
    one, without what makes no sense for a task created again at every tick."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(["Must be a create body (a JSON object)."])
        _refuse_in_template(data)
        return super().to_internal_value(data)


def template_of(validated: dict[str, Any]) -> dict[str, Any]:
    """The template a schedule stores: the validated create body, JSON values only."""
    return {
        name: dataclasses.asdict(value) if isinstance(value, FlowControl) else value
        for name, value in validated.items()
        if value is not None and name not in (*NOT_IN_TEMPLATES, "schedule", "timezone")
    }


def check_cron_field(value: str) -> str:
    """A cron expression, canonical (names as numbers, Sunday as 0)."""
    try:
        return cron.parse(value).expression
    except cron.InvalidCron as exc:
        raise serializers.ValidationError(exc.message) from None


def check_timezone_field(value: str) -> str:
    try:
        return str(cron.zone(value))
    except cron.InvalidCron as exc:
        raise serializers.ValidationError(exc.message) from None


def _cron_field(**kwargs: Any) -> StrictCharField:
    return StrictCharField(
        max_length=cron.MAX_CRON_LENGTH,
        help_text="Five fields: minute hour day-of-month month day-of-week (`0 9 * * 1-5`). "
        "Names (`jan`, `mon`) are read as numbers; restrict the day of month or the day of "
        "week, not both.",
        **kwargs,
    )


def _timezone_field(**kwargs: Any) -> StrictCharField:
    return StrictCharField(
        max_length=100, help_text="An IANA time zone; the cron is read in it.", **kwargs
    )


class ScheduledTaskCreateSerializer(TaskCreateSerializer):
    """``POST /v1/tasks`` body: a task, or with ``schedule`` (a cron expression) a schedule
    that creates this task at every tick."""

    schedule = _cron_field(required=False)
    timezone = _timezone_field(required=False)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and data.get("schedule") is not None:
            _refuse_in_template(data)
        elif isinstance(data, dict) and "timezone" in data:
            raise serializers.ValidationError({"timezone": ["Only with schedule."]})
        return super().to_internal_value(data)

    def validate_schedule(self, value: str) -> str:
        return check_cron_field(value)

    def validate_timezone(self, value: str) -> str:
        return check_timezone_field(value)


class ScheduleCreateSerializer(ObjectBodySerializer):
    """``POST /v1/schedules`` body."""

    cron = _cron_field()
    timezone = _timezone_field(required=False, default="UTC")
    task = ScheduleTaskSerializer(help_text="A create body, as for POST /v1/tasks.")
    paused = StrictBooleanField(required=False, default=False)

    def validate_cron(self, value: str) -> str:
        return check_cron_field(value)

    def validate_timezone(self, value: str) -> str:
        return check_timezone_field(value)


class ScheduleUpdateSerializer(ScheduleCreateSerializer):
    """``PATCH /v1/schedules/{id}`` body: any of the create fields; ``task`` replaces the
    template as a whole."""

    cron = _cron_field(required=False)
    timezone = _timezone_field(required=False)
    task = ScheduleTaskSerializer(required=False, help_text="Replaces the template.")
    paused = StrictBooleanField(required=False)


class ScheduleSerializer(serializers.Serializer[Any]):
    """The public schedule object."""

    id = serializers.UUIDField()
    cron = serializers.CharField()
    timezone = serializers.CharField()
    task = serializers.DictField(help_text="The task template (secret-looking headers redacted).")
    paused = serializers.BooleanField()
    sandbox = serializers.BooleanField(help_text="Created with a test key.")
    nextRunAt = UTCDateTimeField(allow_null=True, help_text="The next tick; null while paused.")
    lastRunAt = UTCDateTimeField(allow_null=True)
    lastTaskId = serializers.UUIDField(allow_null=True, help_text="The task the last tick made.")
    lastError = serializers.CharField(
        allow_null=True, help_text="Why the last tick made no task (a vault token revoked)."
    )
    createdAt = UTCDateTimeField()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return representation.schedule_data(instance)


#: Most tasks one ``POST /v1/tasks/batch`` may create.
MAX_BATCH = 100


class BatchCreateSerializer(serializers.Serializer[Any]):
    """``POST /v1/tasks/batch`` body: 1-100 create bodies, created all together or not at all.
    Each item is validated as ``POST /v1/tasks`` validates a body; errors are keyed
    ``tasks[<index>].<field>``."""

    tasks = serializers.ListField(child=TaskCreateSerializer(), min_length=1, max_length=MAX_BATCH)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["Request body must be a JSON object."]})
        unknown = sorted(set(data) - {"tasks"})
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        items = data.get("tasks")
        if not isinstance(items, list):
            raise serializers.ValidationError({"tasks": ["Must be a list of 1-100 tasks."]})
        if not 1 <= len(items) <= MAX_BATCH:
            raise serializers.ValidationError(
                {"tasks": [f"Must hold 1-{MAX_BATCH} tasks, not {len(items)}."]}
            )
        errors: dict[str, Any] = {}
        self.items: list[services.BatchItem] = []
        keys: dict[str, int] = {}
        # One serializer validates every item: building its fields once (DRF deep-copies them
        # per instance) is most of what validating a small item costs.
        child = TaskCreateSerializer()
        for index, item in enumerate(items):
            try:
                data = child.run_validation(item)
            except serializers.ValidationError as exc:
                for name, message in flatten_errors(exc.detail).items():
                    errors[f"tasks[{index}].{name}"] = [message]
                continue
            key = data.get("idempotencyKey")
            if key is not None:
                if key in keys:
                    errors[f"tasks[{index}].idempotencyKey"] = [
                        f"Repeats the idempotencyKey of tasks[{keys[key]}]."
                    ]
                keys.setdefault(key, index)
            self.items.append(services.BatchItem(spec_of(data), key, child.request_fingerprint))
        if errors:
            raise serializers.ValidationError(errors)
        return {"tasks": self.items}


class TokenCreateSerializer(serializers.Serializer[Any]):
    """``POST /v1/tokens`` body. The value is never echoed, not even in an error."""

    name = StrictCharField(max_length=validators.MAX_VAULT_NAME_LENGTH)
    value = StrictCharField(
        trim_whitespace=False,
        max_length=validators.MAX_VAULT_VALUE_LENGTH,
        help_text="The secret. Write-only: no answer ever contains it.",
    )

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["Request body must be a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

    def validate_name(self, value: str) -> str:
        return str(check(validators.check_vault_name, value))

    def validate_value(self, value: str) -> str:
        return str(check(validators.check_vault_value, value))


class TokenSerializer(serializers.Serializer[Any]):
    """A Token Vault entry: its id (what a task header carries), name and creation time."""

    id = serializers.RegexField(r"^tok_[A-Za-z0-9_-]+$")
    name = serializers.CharField()
    createdAt = UTCDateTimeField(source="created_at")

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return representation.token_data(instance)


class RevokedTokenSerializer(serializers.Serializer[Any]):
    id = serializers.RegexField(r"^tok_[A-Za-z0-9_-]+$")
    name = serializers.CharField()
    revokedAt = UTCDateTimeField(source="revoked_at")

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return representation.revoked_token_data(instance)


class SignalSerializer(ObjectBodySerializer):
    """``POST /v1/signals/{token}`` body."""

    status = StrictChoiceField(choices=SignalStatus.choices)
    result = AnyJSONField(required=False, allow_null=True)
    error = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=validators.MAX_ERROR_LENGTH,
    )

    def validate_result(self, value: Any) -> Any:
        return check(validators.check_signal_result, value)

    def validate_error(self, value: str | None) -> str | None:
        return check(validators.check_signal_error, value)  # type: ignore[no-any-return]


class HeartbeatSerializer(ObjectBodySerializer):
    """``POST /v1/signals/{token}/heartbeat`` body."""

    extendBy = StrictIntegerField(min_value=1)

    def validate_extendBy(self, value: int) -> int:
        if value > app_settings.MAX_WAIT_TIME:
            raise serializers.ValidationError(
                f"Must be between 1 and {app_settings.MAX_WAIT_TIME} seconds."
            )
        return value


class QueueSerializer(serializers.Serializer[Any]):
    """One queue of the team: its open tasks by status, and whether it is paused."""

    name = serializers.CharField()
    paused = serializers.BooleanField(
        help_text="No task of the queue starts (paused by the team, or by the operator for "
        "every team); tasks are still accepted, waiting ones still take signals."
    )
    pending = serializers.IntegerField(min_value=0)
    delayed = serializers.IntegerField(min_value=0)
    processing = serializers.IntegerField(min_value=0)
    waiting = serializers.IntegerField(min_value=0)
    polling = serializers.IntegerField(min_value=0)
    oldestPendingAgeSeconds = serializers.FloatField(
        min_value=0, help_text="How long the oldest due, unstarted task has waited (0: none)."
    )

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return representation.queue_data(instance)
