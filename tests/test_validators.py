"""The input rules shared by the API, the admin and the commands, and asserted by services."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from asyncqueue_django import services, validators
from asyncqueue_django.models import Team
from asyncqueue_django.services import TaskSpec
from asyncqueue_django.validators import InvalidInput


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NaN", "NaN is not allowed"),
        ('{"a": Infinity}', "Infinity is not allowed"),
        ('"a\\u0000b"', "NUL"),
        ("[" * 100 + "]" * 100, "nested deeper than 64"),
        ("{", "Expecting property name"),
    ],
)
def test_parse_json_text_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validators.parse_json_text(text)


def test_parse_json_text_accepts_json() -> None:
    assert validators.parse_json_text('{"ok": [1, 2.5, null]}') == {"ok": [1, 2.5, None]}


def test_signal_result_size_is_capped() -> None:
    with override_settings(ASYNCQUEUE={"MAX_BODY_BYTES": 10}):
        assert validators.check_signal_result("x" * 8) == "x" * 8
        with pytest.raises(InvalidInput) as excinfo:
            validators.check_signal_result("x" * 9)
    assert excinfo.value.limit == 10
    assert excinfo.value.message == "Must be at most 10 bytes as JSON."


@pytest.mark.parametrize(
    ("text", "ok"),
    [(None, True), ("", True), ("e" * 10_000, True), ("e" * 10_001, False), ("a\x00b", False)],
)
def test_signal_error_rules(text: str | None, ok: bool) -> None:
    if ok:
        assert validators.check_signal_error(text) == text
    else:
        with pytest.raises(InvalidInput):
            validators.check_signal_error(text)


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_signal_status_accepts_the_two_outcomes(status: str) -> None:
    assert validators.check_signal_status(status) == status


@pytest.mark.parametrize("status", ["timeout", "pending", "", "COMPLETED"])
def test_signal_status_refuses_the_rest(status: str) -> None:
    with pytest.raises(InvalidInput, match="completed or failed"):
        validators.check_signal_status(status)


@pytest.mark.parametrize("name", ["default", "a.b-c_d", "q" * 100])
def test_queue_names(name: str) -> None:
    assert validators.check_queue_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", "q" * 101, "é", "a\n"])
def test_bad_queue_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        validators.check_queue_name(name)


def test_services_assert_the_rules_too(team: Team) -> None:
    """A caller that skipped validation (a bug) is refused by the write path itself."""
    with pytest.raises(InvalidInput):
        services.create_task(team, TaskSpec(target_url="http://127.0.0.1:9/", queue="bad queue"))
    created = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", wait_for_signal=True)
    )
    token: Any = created.signal_token
    with pytest.raises(InvalidInput):
        services.signal_task(token, "completed", error="a\x00b")
    with pytest.raises(InvalidInput):
        services.signal_task(token, "timeout")
