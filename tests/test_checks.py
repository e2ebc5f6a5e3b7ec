"""System checks for ``ASYNCQUEUE`` (``checks.py``), called directly under ``override_settings``."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import Error, Tags, Warning, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from asyncqueue_django.checks import check_settings
from asyncqueue_django.conf import DEFAULTS, SETTINGS


def ids(**asyncqueue: Any) -> list[str]:
    with override_settings(ASYNCQUEUE=asyncqueue):
        return [m.id for m in check_settings()]


def messages(**asyncqueue: Any) -> list[Any]:
    with override_settings(ASYNCQUEUE=asyncqueue):
        return check_settings()


def _wrong_type_values(name: str) -> list[Any]:
    spec = SETTINGS[name]
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    values: list[Any] = [object()]
    values.append(5 if str in types else "5")
    if bool not in types:
        values.append(True)  # bool is an int subclass but never a number here
    else:
        values.append(1)  # nor is 1 a bool
    if float not in types and int in types:
        values.append(1.5)
    if list in types:
        values.append(("default",))
    return values


WRONG_TYPES = [
    pytest.param(name, value, id=f"{name}-{type(value).__name__}")
    for name in sorted(SETTINGS)
    for value in _wrong_type_values(name)
]


def test_empty_dict_is_fine() -> None:
    assert ids() == []


def test_all_defaults_given_explicitly_are_fine() -> None:
    assert ids(**DEFAULTS) == []


def test_test_settings_pass_apart_from_the_silenced_warning() -> None:
    assert [m.id for m in check_settings()] == ["asyncqueue.W001"]
    assert settings.SILENCED_SYSTEM_CHECKS == ["asyncqueue.W001"]


@pytest.mark.parametrize("value", [["MAX_TIMEOUT"], "x", None, 5, ("MAX_TIMEOUT", 5)])
def test_non_dict_is_e001(value: Any) -> None:
    with override_settings(ASYNCQUEUE=value):
        found = check_settings()
    assert [m.id for m in found] == ["asyncqueue.E001"]
    assert isinstance(found[0], Error)
    assert found[0].msg == "settings.ASYNCQUEUE must be a dict."


def test_absent_setting_is_fine() -> None:
    with override_settings():
        del settings.ASYNCQUEUE
        assert check_settings() == []


def test_unknown_key_is_e002() -> None:
    found = messages(MAX_TIMEOUTS=5, TIMEOUT=1)
    assert [m.id for m in found] == ["asyncqueue.E002", "asyncqueue.E002"]
    assert found[0].msg == "Unknown setting ASYNCQUEUE['MAX_TIMEOUTS']."
    assert found[1].msg == "Unknown setting ASYNCQUEUE['TIMEOUT']."
    assert "README" in (found[0].hint or "")


def test_lowercase_key_is_unknown() -> None:
    assert ids(max_timeout=5) == ["asyncqueue.E002"]


@pytest.mark.parametrize(("name", "value"), WRONG_TYPES)
def test_wrong_type_is_e003(name: str, value: Any) -> None:
    found = messages(**{name: value})
    assert [m.id for m in found] == ["asyncqueue.E003"]
    assert found[0].msg.startswith(f"ASYNCQUEUE[{name!r}] must be ")
    assert found[0].msg.endswith(f", not {type(value).__name__}.")


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_declared_type_passes(name: str) -> None:
    assert ids(**{name: SETTINGS[name].default}) == []


OUT_OF_RANGE = [
    pytest.param(name, SETTINGS[name].min - 1, id=f"{name}-below")
    for name in sorted(SETTINGS)
    if SETTINGS[name].min is not None
] + [
    pytest.param(name, SETTINGS[name].max + 1, id=f"{name}-above")
    for name in sorted(SETTINGS)
    if SETTINGS[name].max is not None
]


@pytest.mark.parametrize(("name", "value"), OUT_OF_RANGE)
def test_out_of_range_is_e004(name: str, value: Any) -> None:
    found = messages(**{name: value})
    assert [m.id for m in found] == ["asyncqueue.E004"]
    assert found[0].msg.startswith(f"ASYNCQUEUE[{name!r}] = {value!r} is outside ")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_TIMEOUT", 1),
        ("MAX_RETRIES", 100),
        ("MAX_RETRIES", 0),
        ("RETRY_JITTER", 0),
        ("RETRY_JITTER", 1),
        ("CONNECT_TIMEOUT", 0.1),
        ("SWEEP_BATCH_SIZE", 10_000),
        ("BATCH_SIZE", 1),
        ("BATCH_SIZE", 256),
        ("MAX_REQUEST_BYTES", 1024),
        ("MAX_REDIRECTS", 0),
    ],
)
def test_bounds_are_inclusive(name: str, value: Any) -> None:
    extra = {"DEFAULT_TIMEOUT": 1} if name == "MAX_TIMEOUT" else {}
    extra |= {"DEFAULT_MAX_RETRIES": 0} if name == "MAX_RETRIES" else {}
    extra |= {"MAX_BODY_BYTES": 1024} if name == "MAX_REQUEST_BYTES" else {}
    assert ids(**{name: value}, **extra) == []


@pytest.mark.parametrize(
    ("small", "large", "config"),
    [
        ("DEFAULT_TIMEOUT", "MAX_TIMEOUT", {"DEFAULT_TIMEOUT": 301}),
        ("DEFAULT_TIMEOUT", "MAX_TIMEOUT", {"MAX_TIMEOUT": 10}),
        ("DEFAULT_MAX_RETRIES", "MAX_RETRIES", {"DEFAULT_MAX_RETRIES": 11}),
        ("DEFAULT_MAX_RETRIES", "MAX_RETRIES", {"MAX_RETRIES": 2}),
        ("DEFAULT_MAX_WAIT_TIME", "MAX_WAIT_TIME", {"MAX_WAIT_TIME": 3600}),
        (
            "MAX_STORED_RESPONSE_BYTES",
            "MAX_RESPONSE_BYTES",
            {"MAX_RESPONSE_BYTES": 2048, "MAX_STORED_RESPONSE_BYTES": 4096},
        ),
        ("MAX_BODY_BYTES", "MAX_REQUEST_BYTES", {"MAX_REQUEST_BYTES": 4096}),
    ],
)
def test_ordering_is_e005(small: str, large: str, config: dict[str, Any]) -> None:
    found = messages(**config)
    assert [m.id for m in found] == ["asyncqueue.E005"]
    assert found[0].msg.startswith(f"ASYNCQUEUE[{small!r}] (")
    assert f"exceeds ASYNCQUEUE[{large!r}]" in found[0].msg


def test_equal_ordered_pair_is_fine() -> None:
    assert ids(DEFAULT_TIMEOUT=300, MAX_TIMEOUT=300) == []


def test_ordering_is_not_checked_while_values_are_invalid() -> None:
    assert ids(DEFAULT_TIMEOUT="x", MAX_TIMEOUT=10) == ["asyncqueue.E003"]


@pytest.mark.parametrize(
    "queues",
    [[], ["bad name"], ["ok", ""], [5], ["a" * 101], ["ok", None], ["ü"]],
    ids=["empty", "space", "blank", "int", "too-long", "none", "non-ascii"],
)
def test_bad_queues_are_e006(queues: list[Any]) -> None:
    found = messages(QUEUES=queues)
    assert [m.id for m in found] == ["asyncqueue.E006"]
    assert found[0].msg.startswith("ASYNCQUEUE['QUEUES'] must be a non-empty list")


def test_queue_with_trailing_newline_is_e006() -> None:
    assert ids(QUEUES=["default\n"]) == ["asyncqueue.E006"]


@pytest.mark.parametrize(
    "queues", [None, ["default"], ["default", "video.high", "a-b_c", "x" * 100]]
)
def test_good_queues(queues: Any) -> None:
    assert ids(QUEUES=queues) == []


def test_allow_private_targets_without_debug_is_w001() -> None:
    with override_settings(DEBUG=False):
        found = messages(ALLOW_PRIVATE_TARGETS=True)
    assert [m.id for m in found] == ["asyncqueue.W001"]
    assert isinstance(found[0], Warning)
    assert not isinstance(found[0], Error)


def test_allow_private_targets_with_debug_is_fine() -> None:
    with override_settings(DEBUG=True):
        assert ids(ALLOW_PRIVATE_TARGETS=True) == []


def test_private_targets_off_is_fine_without_debug() -> None:
    with override_settings(DEBUG=False):
        assert ids(ALLOW_PRIVATE_TARGETS=False) == []


def test_several_errors_are_all_reported() -> None:
    assert sorted(ids(NOPE=1, MAX_TIMEOUT="x", MAX_RETRIES=-1, QUEUES=[])) == [
        "asyncqueue.E002",
        "asyncqueue.E003",
        "asyncqueue.E004",
        "asyncqueue.E006",
    ]


def test_check_is_registered_with_django() -> None:
    with override_settings(ASYNCQUEUE={"NOPE": 1}):
        found = run_checks(tags=[Tags.compatibility])
    assert "asyncqueue.E002" in [m.id for m in found]


def test_check_command_passes_with_the_test_settings() -> None:
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)
    assert "asyncqueue" not in out.getvalue() + err.getvalue()
    assert "1 silenced" in out.getvalue()


def test_check_command_fails_on_an_error() -> None:
    with override_settings(ASYNCQUEUE={"MAX_TIMEOUT": "x"}), pytest.raises(SystemCheckError) as e:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "asyncqueue.E003" in str(e.value)


@pytest.mark.parametrize("name", ["ALLOWED_NETWORKS", "TRUSTED_PROXIES"])
@pytest.mark.parametrize(
    "networks", [["10.0.0.0/33"], ["not-a-net"], [None], ["10.0.0.0/8", "::1/129"]]
)
def test_bad_network_lists_are_e007(name: str, networks: list[Any]) -> None:
    assert ids(**{name: networks}) == ["asyncqueue.E007"]


@pytest.mark.parametrize("name", ["ALLOWED_NETWORKS", "TRUSTED_PROXIES"])
@pytest.mark.parametrize("networks", [[], ["10.0.0.0/8"], ["10.1.2.3"], ["fd00::/8", "::1"]])
def test_good_network_lists(name: str, networks: list[str]) -> None:
    assert ids(**{name: networks}) == []


@pytest.mark.parametrize("rate", ["600", "600/week", "/min", "ten/min", "600 / min", "-1/s"])
def test_bad_signal_rate_is_e008(rate: str) -> None:
    assert ids(SIGNAL_RATE_LIMIT=rate) == ["asyncqueue.E008"]


@pytest.mark.parametrize("rate", ["600/min", "1/s", "10/second", "5/hour", "100/d"])
def test_good_signal_rate(rate: str) -> None:
    assert ids(SIGNAL_RATE_LIMIT=rate) == []


@pytest.mark.parametrize(
    "schedule",
    [[-1], [True], ["5"], [None], [5, 8 * 86_400], [1] * 51, [float("nan")]],
    ids=["negative", "bool", "str", "none", "over-a-week", "too-many", "nan"],
)
def test_bad_webhook_retry_schedule_is_e009(schedule: list[Any]) -> None:
    assert ids(WEBHOOK_RETRY_SCHEDULE=schedule) == ["asyncqueue.E009"]


@pytest.mark.parametrize("schedule", [[], [0], [0.2, 0.2], [5, 30, 7 * 86_400], [1] * 50])
def test_good_webhook_retry_schedule(schedule: list[Any]) -> None:
    assert ids(WEBHOOK_RETRY_SCHEDULE=schedule) == []


@pytest.mark.parametrize("queue", ["", "has space", "x" * 101, "webhooks\n", "a/b"])
def test_bad_webhook_queue_is_e010(queue: str) -> None:
    assert ids(WEBHOOK_QUEUE=queue) == ["asyncqueue.E010"]


@pytest.mark.parametrize("queue", ["default", "webhooks", "hooks.high-1"])
def test_good_webhook_queue(queue: str) -> None:
    assert ids(WEBHOOK_QUEUE=queue) == []


@pytest.mark.parametrize("token", ["short", " " * 20, "x" * 15])
def test_a_short_metrics_token_is_e011(token: str) -> None:
    assert ids(METRICS_TOKEN=token) == ["asyncqueue.E012"]


@pytest.mark.parametrize("token", [None, "x" * 16, "a-long-random-metrics-token-value"])
def test_a_metrics_token_of_16_characters_or_none_is_fine(token: str | None) -> None:
    assert ids(METRICS_TOKEN=token) == []


@pytest.mark.parametrize("value", [5, [], b"x" * 20])
def test_a_metrics_token_of_another_type_is_e003(value: Any) -> None:
    assert ids(METRICS_TOKEN=value) == ["asyncqueue.E003"]


@pytest.mark.parametrize(("value", "expected"), [(-1, "E004"), (301, "E004"), ("5", "E003")])
def test_metrics_cache_seconds_is_checked(value: Any, expected: str) -> None:
    assert ids(METRICS_CACHE_SECONDS=value) == [f"asyncqueue.{expected}"]


def test_docs_without_the_sidecar_app_is_w002(monkeypatch: pytest.MonkeyPatch) -> None:
    apps = [a for a in settings.INSTALLED_APPS if a != "drf_spectacular_sidecar"]
    # The setting only, not the app registry: the check reads the setting.
    monkeypatch.setattr(settings, "INSTALLED_APPS", apps)
    with override_settings(ASYNCQUEUE={}):
        found = check_settings()
    assert [m.id for m in found] == ["asyncqueue.W002"]
    assert not isinstance(found[0], Error)


@pytest.mark.parametrize(
    "value",
    ["queue.example.com", "ftp://queue.example.com", "https://q.example/", "https://q.example?x=1"],
)
def test_public_base_url_must_be_an_http_origin_without_query_or_trailing_slash(value: str) -> None:
    assert ids(PUBLIC_BASE_URL=value) == ["asyncqueue.E013"]


def test_public_base_url_may_have_a_path_prefix() -> None:
    assert ids(PUBLIC_BASE_URL="https://example.com/queue") == []


def test_missing_public_base_url_is_a_warning_of_its_own() -> None:
    from asyncqueue_django.checks import check_public_base_url

    with override_settings(ASYNCQUEUE={}):
        assert [m.id for m in check_public_base_url()] == ["asyncqueue.W004"]
    with override_settings(ASYNCQUEUE={"PUBLIC_BASE_URL": "https://q.example"}):
        assert check_public_base_url() == []


def test_callback_rate_limit_is_checked_like_the_others() -> None:
    assert ids(CALLBACK_RATE_LIMIT="lots") == ["asyncqueue.E008"]
