"""Third-party async jobs, the pure half: the provider callback URL placeholder, poll settings
(``pollConfig``) and their validation, the ``{startResult.…}`` templates, dot paths into JSON,
reading a poll answer, and the provider templates of ``GET /v1/providers``.

Pure: no models, DRF, Celery or requests. The services decide what a reading means for a task
(``services/polls.py``); the worker only sends the requests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from asyncqueue_django.conf import app_settings
from asyncqueue_django.jsonvalue import check_json_value, loads_strict
from asyncqueue_django.tokens import CALLBACK_PLACEHOLDER
from asyncqueue_django.validators import InvalidInput

# --------------------------------------------------------------------------------------------
# The provider callback URL placeholder
# --------------------------------------------------------------------------------------------


def fill_placeholder(value: Any, url: str) -> Any:
    """``value`` with every placeholder in its strings replaced by ``url`` (JSON values are
    copied; keys are left alone)."""
    if isinstance(value, str):
        return value.replace(CALLBACK_PLACEHOLDER, url)
    if isinstance(value, dict):
        return {k: fill_placeholder(v, url) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_placeholder(v, url) for v in value]
    return value


def fill_url_placeholder(target: str, url: str) -> str:
    """A target URL with the placeholder replaced: URL-encoded where it sits in the query or
    fragment (``?webhook={asyncqueue_callback_url}``), as is elsewhere."""
    query_at = min((i for i in (target.find("?"), target.find("#")) if i >= 0), default=-1)
    parts = target.split(CALLBACK_PLACEHOLDER)
    out, position = parts[0], len(parts[0])
    for part in parts[1:]:
        encoded = 0 <= query_at < position
        out += (quote(url, safe="") if encoded else url) + part
        position += len(CALLBACK_PLACEHOLDER) + len(part)
    return out


# --------------------------------------------------------------------------------------------
# Dot paths and templates
# --------------------------------------------------------------------------------------------

#: A dot path into JSON: names and list indexes, ``output.0.url``.
PATH_RE = re.compile(r"^[A-Za-z0-9_\-$]+(\.[A-Za-z0-9_\-$]+)*$")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FIELD_RE = re.compile(r"\{([^{}]*)\}")

MISSING = object()


def check_path(path: Any) -> str:
    """A dot path (``data.status``, ``output.0``); :class:`InvalidInput` otherwise."""
    if not isinstance(path, str) or not PATH_RE.fullmatch(path) or len(path) > 500:
        raise InvalidInput(
            "Must be a dot path such as `status` or `data.output.0.url` (letters, digits, "
            "`_`, `-`, `$`, separated by dots)."
        )
    return path


def extract(value: Any, path: str) -> Any:
    """The value at the dot ``path`` in ``value`` (a number indexes a list), or
    :data:`MISSING`."""
    for name in path.split("."):
        if isinstance(value, dict) and name in value:
            value = value[name]
        elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
            value = value[int(name)]
        else:
            return MISSING
    return value


@dataclass(frozen=True)
class Field:
    """One ``{startResult.…}`` field of a template."""

    text: str  # as written, braces included
    source: str  # "body" or "headers"
    path: str  # a dot path into the body, or a header name


def template_fields(template: str) -> list[Field]:
    """The fields of a URL template; :class:`InvalidInput` naming the first that does not
    parse (only ``{startResult.body.<dot.path>}`` and ``{startResult.headers.<name>}``)."""
    fields: list[Field] = []
    for match in _FIELD_RE.finditer(template):
        inner = match.group(1)
        head, _, rest = inner.partition(".")
        source, _, path = rest.partition(".")
        ok = head == "startResult" and (
            (source == "body" and PATH_RE.fullmatch(path) is not None)
            or (source == "headers" and _HEADER_NAME_RE.fullmatch(path) is not None)
        )
        if not ok:
            raise InvalidInput(
                f"{match.group(0)!r} is not a template field; use "
                "{startResult.body.<dot.path>} or {startResult.headers.<name>}."
            )
        fields.append(Field(match.group(0), source, path))
    stray = _FIELD_RE.sub("", template)
    if "{" in stray or "}" in stray:
        raise InvalidInput("Has an unmatched `{` or `}`.")
    return fields


class TemplateError(ValueError):
    """A template field the submit answer does not provide."""


def render(template: str, body: Any, headers: dict[str, str]) -> str:
    """The URL ``template`` with its fields taken from the submit answer (``body`` parsed
    JSON, ``headers``). A field that is the whole template is put in as is (a URL the
    provider returned); elsewhere the value is percent-encoded. Raises :class:`TemplateError`
    for a field the answer lacks, or whose value is not a string or number."""
    lower = {k.lower(): v for k, v in headers.items()}
    out = template
    for field in template_fields(template):
        if field.source == "body":
            value = extract(body, field.path)
        else:
            value = lower.get(field.path.lower(), MISSING)
        if value is MISSING or value is None:
            raise TemplateError(f"the submit answer has no {field.text[1:-1]}")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise TemplateError(f"{field.text[1:-1]} in the submit answer is not a string")
        text = str(value)
        out = out.replace(field.text, text if field.text == template else quote(text, safe=""))
    return out


def sample_url(template: str) -> str:
    """``template`` with sample values, to check it makes a URL at all."""
    out = template
    for field in template_fields(template):
        out = out.replace(
            field.text, "https://provider.example/x" if field.text == template else "x"
        )
    return out


# --------------------------------------------------------------------------------------------
# pollConfig
# --------------------------------------------------------------------------------------------

REQUIRED_KEYS = ("urlTemplate", "interval", "statusPath", "doneValues", "maxDuration")
OPTIONAL_KEYS = ("failValues", "resultPath", "resultUrlTemplate", "errorPath", "forwardAuth")
POLL_KEYS = (*REQUIRED_KEYS, *OPTIONAL_KEYS)
MAX_VALUES = 20


def _int(value: Any, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"Must be an integer number of seconds, {low}..{high}.")
    return int(value)


def _values(value: Any, *, empty: bool) -> list[Any]:
    ok = isinstance(value, list) and len(value) <= MAX_VALUES and (empty or value)
    if not ok or any(isinstance(v, bool) or not isinstance(v, str | int | float) for v in value):
        raise InvalidInput(
            f"Must be a list of {'0' if empty else '1'}-{MAX_VALUES} strings or numbers."
        )
    return list(value)


def check_poll_config(
    given: Any, provider: str | None, url_check: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The complete poll settings of a task: the ``provider`` template's (if any), overridden
    key by key by ``given``. Raises :class:`PollConfigError` naming the field
    (``provider``, ``pollConfig`` or ``pollConfig.<key>``). ``url_check`` (a callable that
    raises ``ValueError`` for a URL it refuses) checks the URL templates."""
    if provider is not None and provider not in PROVIDERS:
        known = ", ".join(PROVIDERS)
        raise PollConfigError("provider", f"Unknown provider {provider!r}; use one of {known}.")
    if given is not None and not isinstance(given, dict):
        raise PollConfigError("pollConfig", "Must be an object.")
    base = dict(PROVIDERS[provider].poll_config) if provider else {}
    unknown = sorted(set(given or {}) - set(POLL_KEYS))
    if unknown:
        keys = ", ".join(POLL_KEYS)
        raise PollConfigError(f"pollConfig.{unknown[0]}", f"Unknown key; the keys are {keys}.")
    config = {**base, **(given or {})}
    for key in REQUIRED_KEYS:
        if config.get(key) is None:
            raise PollConfigError(f"pollConfig.{key}", "This key is required.")
    out: dict[str, Any] = {}
    cap = app_settings.MAX_POLL_DURATION
    for key in POLL_KEYS:
        value = config.get(key)
        if value is None:
            continue
        try:
            if key in ("urlTemplate", "resultUrlTemplate"):
                if not isinstance(value, str) or not value or len(value) > 2048:
                    raise InvalidInput("Must be a URL template of 1-2048 characters.")
                template_fields(value)
                if url_check is not None:
                    try:
                        url_check(sample_url(value))
                    except ValueError as exc:
                        raise InvalidInput(str(exc)) from None
            elif key == "interval":
                value = _int(value, app_settings.MIN_POLL_INTERVAL, cap)
            elif key == "maxDuration":
                value = _int(value, 1, cap)
            elif key in ("statusPath", "resultPath", "errorPath"):
                value = check_path(value)
            elif key in ("doneValues", "failValues"):
                value = _values(value, empty=key == "failValues")
            elif key == "forwardAuth" and not isinstance(value, bool):
                raise InvalidInput("Must be true or false.")
        except InvalidInput as exc:
            raise PollConfigError(f"pollConfig.{key}", exc.message) from None
        out[key] = value
    if out["interval"] > out["maxDuration"]:
        raise PollConfigError("pollConfig.interval", "Must not be longer than maxDuration.")
    if "resultPath" in out and "resultUrlTemplate" in out:
        raise PollConfigError(
            "pollConfig.resultPath", "Give either resultPath or resultUrlTemplate, not both."
        )
    out.setdefault("failValues", [])
    out.setdefault("forwardAuth", False)
    return out


class PollConfigError(InvalidInput):
    """A ``provider``/``pollConfig`` refused, with the field to name in the 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------------------------
# Reading a poll answer
# --------------------------------------------------------------------------------------------

DONE = "done"
FAILED = "failed"
RUNNING = "running"
ERROR = "error"


@dataclass(frozen=True)
class Reading:
    """What one poll answer says: ``done`` (``value`` is the result), ``failed`` (``value``
    is the provider's error text), ``running`` (``value`` is the status seen), or ``error``
    (the answer could not be read; ``value`` says why)."""

    state: str
    value: Any = None


def parse_body(raw: bytes, truncated: bool) -> Any:
    """A poll answer's body as JSON; ``ValueError`` if it is not (complete) JSON."""
    if truncated:
        raise ValueError("the answer was cut off (larger than MAX_RESPONSE_BYTES)")
    value = loads_strict(raw)
    check_json_value(value)
    return value


def read_poll(
    config: dict[str, Any], status_code: int | None, raw: bytes, truncated: bool
) -> Reading:
    """What a poll answer (``status_code``, ``raw`` body) says under ``config``.

    Not a 2xx, not JSON, or without ``statusPath``: an ``error`` (a failed poll, retried on the
    next tick). A 202 Accepted is ``running`` whatever its body says (some providers answer
    202 until the job is done). Otherwise the value at ``statusPath`` is in ``doneValues``
    (``done``: the value at ``resultPath``, or the whole body), in ``failValues`` (``failed``:
    the text at ``errorPath``, or the status), or neither (``running``)."""
    if status_code is None or not 200 <= status_code < 300:
        return Reading(ERROR, f"the poll answered HTTP {status_code}")
    if status_code == 202:
        return Reading(RUNNING, "202 Accepted")
    try:
        body = parse_body(raw, truncated)
    except (ValueError, RecursionError) as exc:
        return Reading(ERROR, f"the poll answer is not JSON ({exc})")
    status = extract(body, config["statusPath"])
    if status is MISSING:
        return Reading(ERROR, f"the poll answer has no {config['statusPath']}")
    if status in config["doneValues"]:
        path = config.get("resultPath")
        if path is None:
            return Reading(DONE, body)
        value = extract(body, path)
        return Reading(DONE, None if value is MISSING else value)
    if status in config["failValues"]:
        path = config.get("errorPath")
        value = extract(body, path) if path else MISSING
        if value is MISSING or value is None or value == "":
            value = f"the provider reported {json.dumps(status)}"
        elif not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False)
        return Reading(FAILED, value)
    return Reading(RUNNING, status)


# --------------------------------------------------------------------------------------------
# Provider templates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """A provider template: a ``pollConfig`` a task can name by ``provider`` id and override
    key by key. ``docs`` is the public API reference the paths were taken from."""

    id: str
    name: str
    description: str
    docs: str
    poll_config: dict[str, Any]


def _provider(
    id: str, name: str, description: str, docs: str, interval: int, max_duration: int, **keys: Any
) -> Provider:
    return Provider(
        id,
        name,
        description,
        docs,
        {"interval": interval, "maxDuration": max_duration, "forwardAuth": True, **keys},
    )


PROVIDERS: dict[str, Provider] = {
    p.id: p
    for p in (
        _provider(
            "fal",
            "fal.ai queue",
            "Submit to https://queue.fal.run/<model>; the answer's status_url is polled and "
            "the response_url fetched when the request is COMPLETED.",
            "https://docs.fal.ai/model-endpoints/queue",
            3,
            600,
            urlTemplate="{startResult.body.status_url}",
            statusPath="status",
            doneValues=["COMPLETED"],
            failValues=["FAILED", "CANCELED"],
            resultUrlTemplate="{startResult.body.response_url}",
            errorPath="error",
        ),
        _provider(
            "replicate",
            "Replicate predictions",
            "Submit to https://api.replicate.com/v1/predictions; the prediction's urls.get is "
            "polled until it has succeeded, failed or been canceled.",
            "https://replicate.com/docs/reference/http#predictions.get",
            5,
            600,
            urlTemplate="{startResult.body.urls.get}",
            statusPath="status",
            doneValues=["succeeded"],
            failValues=["failed", "canceled"],
            resultPath="output",
            errorPath="error",
        ),
        _provider(
            "runwayml",
            "Runway tasks",
            "Submit to a generation endpoint of https://api.dev.runwayml.com/v1 (the task's "
            "headers carry the key and X-Runway-Version); GET /v1/tasks/{id} is polled.",
            "https://docs.dev.runwayml.com/api/#tag/Task-management/paths/~1v1~1tasks~1%7Bid%7D/get",
            5,
            600,
            urlTemplate="https://api.dev.runwayml.com/v1/tasks/{startResult.body.id}",
            statusPath="status",
            doneValues=["SUCCEEDED"],
            failValues=["FAILED", "CANCELLED"],
            resultPath="output",
            errorPath="failure",
        ),
        _provider(
            "luma",
            "Luma Dream Machine",
            "Submit to https://api.lumalabs.ai/dream-machine/v1/generations; the generation is "
            "polled until its state is completed or failed.",
            "https://docs.lumalabs.ai/reference/getgeneration",
            5,
            600,
            urlTemplate="https://api.lumalabs.ai/dream-machine/v1/generations/{startResult.body.id}",
            statusPath="state",
            doneValues=["completed"],
            failValues=["failed"],
            resultPath="assets",
            errorPath="failure_reason",
        ),
        _provider(
            "elevenlabs-dubbing",
            "ElevenLabs dubbing",
            "Submit to https://api.elevenlabs.io/v1/dubbing; the project is polled until its "
            "status is dubbed or failed.",
            "https://elevenlabs.io/docs/api-reference/dubbing/get",
            10,
            1800,
            urlTemplate="https://api.elevenlabs.io/v1/dubbing/{startResult.body.dubbing_id}",
            statusPath="status",
            doneValues=["dubbed"],
            failValues=["failed"],
            errorPath="error",
        ),
        _provider(
            "stability-video",
            "Stability AI image-to-video",
            "Submit to https://api.stability.ai/v2beta/image-to-video; the result is polled "
            "(202 while in progress) until its finish_reason is SUCCESS.",
            "https://platform.stability.ai/docs/api-reference#tag/Image-to-Video/paths/"
            "~1v2beta~1image-to-video~1result~1%7Bid%7D/get",
            10,
            600,
            urlTemplate="https://api.stability.ai/v2beta/image-to-video/result/{startResult.body.id}",
            statusPath="finish_reason",
            doneValues=["SUCCESS"],
            failValues=["CONTENT_FILTERED", "ERROR"],
        ),
    )
}


def provider_data(provider: Provider) -> dict[str, Any]:
    """A provider template as ``GET /v1/providers`` shows it."""
    return {
        "id": provider.id,
        "name": provider.name,
        "description": provider.description,
        "docs": provider.docs,
        "pollConfig": dict(provider.poll_config),
    }
