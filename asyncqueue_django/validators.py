"""Input rules, written once: the API serializers, the admin's forms and the management
commands all call these, and the services assert them again (a caller that skipped them is a
bug, refused with :class:`InvalidInput`).

Pure: no models, DRF or Celery. Each rule raises :class:`InvalidInput`, a ``ValueError`` whose
message is a sentence a caller can show as is (or reword with ``limit``).
"""

from __future__ import annotations

import re
from typing import Any

from asyncqueue_django.conf import app_settings
from asyncqueue_django.jsonvalue import MAX_JSON_DEPTH, check_json_value, json_size, loads_strict
from asyncqueue_django.states import SignalStatus
from asyncqueue_django.tokens import CALLBACK_PLACEHOLDER
from asyncqueue_django.values import FlowControl

#: Queue names: what Celery, Redis and RabbitMQ all accept as a plain name.
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")

#: The longest error text a signal (or an operator) may give a task.
MAX_ERROR_LENGTH = 10_000


class InvalidInput(ValueError):
    """An input a rule refuses. ``limit`` is the number the rule enforces, where there is one."""

    def __init__(self, message: str, *, limit: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit


def parse_json_text(text: str | bytes) -> Any:
    """JSON text → value, refusing ``NaN``/``Infinity``, NUL characters, unpaired surrogates
    and nesting deeper than ``MAX_JSON_DEPTH``."""
    try:
        return loads_strict(text)
    except RecursionError:
        raise InvalidInput(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def check_json(value: Any, limit: int) -> Any:
    """A JSON value the database can store, at most ``limit`` bytes as compact JSON."""
    try:
        check_json_value(value)
    except RecursionError:
        raise InvalidInput(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if json_size(value) > limit:
        raise InvalidInput(f"Must be at most {limit} bytes as JSON.", limit=limit)
    return value


def check_signal_status(status: str) -> SignalStatus:
    """A signal resolves a task as ``completed`` or ``failed``, nothing else."""
    if status not in SignalStatus.values:
        raise InvalidInput(
            f"A signal resolves a task as completed or failed, not {status!r}.", limit=None
        )
    return SignalStatus(status)


def check_signal_result(value: Any) -> Any:
    """A signal's result: any storable JSON value, at most ``MAX_BODY_BYTES`` as JSON."""
    if value is None:
        return None
    return check_json(value, app_settings.MAX_BODY_BYTES)


def check_signal_error(text: str | None) -> str | None:
    """A signal's error text: at most ``MAX_ERROR_LENGTH`` characters, no NUL."""
    if text is None:
        return None
    if len(text) > MAX_ERROR_LENGTH:
        raise InvalidInput(
            f"Must be at most {MAX_ERROR_LENGTH} characters.", limit=MAX_ERROR_LENGTH
        )
    if "\x00" in text:
        raise InvalidInput("Must not contain NUL characters.")
    return text


def check_signal(status: str, result: Any, error: str | None) -> None:
    """Every rule of a signal at once (what the services assert)."""
    check_signal_status(status)
    check_signal_result(result)
    check_signal_error(error)


def check_placeholder_use(headers: dict[str, str], on_complete_url: str | None) -> None:
    """The provider callback URL placeholder belongs in the call (target URL, body, payload):
    not in a header (a credential's place) nor in ``onCompleteUrl`` (the service's own
    webhook). :class:`PlaceholderMisplaced` names the field."""
    for name, value in headers.items():
        if CALLBACK_PLACEHOLDER in value:
            raise PlaceholderMisplaced(f"headers.{name}")
    if on_complete_url and CALLBACK_PLACEHOLDER in on_complete_url:
        raise PlaceholderMisplaced("onCompleteUrl")


class PlaceholderMisplaced(InvalidInput):
    """The callback URL placeholder in a field that may not carry it (``field``)."""

    def __init__(self, field: str) -> None:
        super().__init__(
            f"{CALLBACK_PLACEHOLDER} may only be used in targetUrl, body or payload strings."
        )
        self.field = field


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not QUEUE_NAME_RE.fullmatch(name):
        raise InvalidInput("Must be 1-100 characters of letters, digits, '_', '.' or '-'.")
    return name


def check_queue(name: str) -> str:
    """A queue name, and one of ``QUEUES`` when the host limits them."""
    check_queue_name(name)
    allowed = app_settings.QUEUES
    if allowed is not None and name not in allowed:
        raise InvalidInput(f"Unknown queue; use one of {', '.join(allowed)}.")
    return name


#: Flow-control keys: printable, no spaces (they show in logs, the admin and ``/metrics``).
FLOW_KEY_RE = re.compile(r"^[A-Za-z0-9_.:@/\-]{1,100}$")

#: The longest ``flowControl.period`` (s).
MAX_FLOW_PERIOD = 86_400

FLOW_CONTROL_FIELDS = ("key", "parallelism", "rate", "period")


class InvalidFlowControl(InvalidInput):
    """A ``flowControl`` refused; ``field`` names the member (``key``, ``rate`` …)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _flow_int(value: dict[str, Any], name: str, top: int) -> int | None:
    number = value.get(name)
    if number is None:
        return None
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= top:
        raise InvalidFlowControl(name, f"Must be an integer between 1 and {top}.")
    return number


def check_flow_control(value: Any) -> FlowControl:
    """``{"key", "parallelism"?, "rate"?, "period"?}`` → :class:`FlowControl`; raises
    :class:`InvalidFlowControl` naming the member at fault. ``parallelism`` and ``rate`` are
    1..``FLOW_CONTROL_MAX_RATE``, at least one of them given; ``period`` (s, default 1) is
    1..86400 and ignored without ``rate``."""
    if not isinstance(value, dict):
        raise InvalidFlowControl("body", "Must be an object with key, parallelism, rate, period.")
    for name in value:
        if name not in FLOW_CONTROL_FIELDS:
            raise InvalidFlowControl(
                name, f"Unknown field; the fields are {', '.join(FLOW_CONTROL_FIELDS)}."
            )
    key = value.get("key")
    if not isinstance(key, str) or not FLOW_KEY_RE.fullmatch(key):
        raise InvalidFlowControl(
            "key", "Must be 1-100 characters of letters, digits and _ . : @ / -."
        )
    top = app_settings.FLOW_CONTROL_MAX_RATE
    parallelism = _flow_int(value, "parallelism", top)
    rate = _flow_int(value, "rate", top)
    period = _flow_int(value, "period", MAX_FLOW_PERIOD)
    if parallelism is None and rate is None:
        raise InvalidFlowControl("parallelism", "Give parallelism, rate, or both.")
    return FlowControl(key, parallelism, rate, period or 1)


def check_idempotency_key(value: str) -> str:
    """An idempotency key is stored and compared as is: no control characters (NUL would
    also break PostgreSQL)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInput("Must not contain control characters.")
    return value


def check_metadata(value: Any) -> Any:
    if json_size(value) > app_settings.MAX_METADATA_BYTES:
        raise InvalidInput(
            f"Must be at most {app_settings.MAX_METADATA_BYTES} bytes as JSON.",
            limit=app_settings.MAX_METADATA_BYTES,
        )
    return value


#: Characters a header value may not contain: C0 control characters other than horizontal
#: tab, DEL, and the C1 controls U+0080..U+009F (RFC 9110 §5.5 allows visible characters,
#: space, tab and obs-text; a C1 control is no text anyone means to send).
_HEADER_VALUE_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as an HTTP header value, or None.

    Header values go on the wire as ISO-8859-1 (Latin-1) bytes, as HTTP/1.1 defines them and as
    Python's ``http.client`` sends them, so every character must be in U+0000..U+00FF; control
    characters (other than tab) are refused, and so is leading or trailing white space (a
    receiver strips it, and ``requests`` refuses leading white space outright). Text outside
    Latin-1 (names, say) has to be encoded by the sender, e.g. percent-encoded (RFC 8187) or
    Base64.
    """
    bad = _HEADER_VALUE_CONTROL_RE.search(value)
    if bad:
        return f"contains the control character U+{ord(bad.group()):04X}"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError as exc:
        char = value[exc.start]
        return (
            f"contains {char!r} (U+{ord(char):04X}), which is not ISO-8859-1 (Latin-1); "
            "header values are sent as Latin-1 bytes, so encode other text first "
            "(percent-encoding or Base64)"
        )
    if value != value.strip():  # any Unicode white space, U+00A0 included (requests refuses it)
        return "starts or ends with white space"
    return None


#: The longest Token Vault value: it is sent as a header value.
MAX_VAULT_VALUE_LENGTH = 8192
MAX_VAULT_NAME_LENGTH = 100


def check_vault_name(name: str) -> str:
    """A Token Vault entry's name: 1-100 characters, no control characters."""
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_VAULT_NAME_LENGTH:
        raise InvalidInput(
            f"Must be 1-{MAX_VAULT_NAME_LENGTH} characters.", limit=MAX_VAULT_NAME_LENGTH
        )
    if len(name) > MAX_VAULT_NAME_LENGTH:
        raise InvalidInput(
            f"Must be 1-{MAX_VAULT_NAME_LENGTH} characters.", limit=MAX_VAULT_NAME_LENGTH
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidInput("Must not contain control characters.")
    return name


def check_vault_value(value: str) -> str:
    """A Token Vault value: what a header will carry, so it must be a valid header value.

    The message never quotes the value (it is a secret)."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("Must be a non-empty string.")
    if len(value) > MAX_VAULT_VALUE_LENGTH:
        raise InvalidInput(
            f"Must be at most {MAX_VAULT_VALUE_LENGTH} characters.", limit=MAX_VAULT_VALUE_LENGTH
        )
    problem = header_value_problem(value)
    if problem:
        # header_value_problem may quote one character; name only the rule.
        reason = (
            "starts or ends with white space"
            if "white space" in problem
            else (
                "contains a character a header value cannot carry (control characters, or text "
                "outside ISO-8859-1)"
            )
        )
        raise InvalidInput(f"Is sent as a header value, and {reason}.")
    return value
