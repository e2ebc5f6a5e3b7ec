"""Management commands: ``asyncqueue_create_api_key``."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from rest_framework.test import APIClient

from asyncqueue_django import tokens
from asyncqueue_django.models import ApiKey, Task, Team

pytestmark = pytest.mark.django_db


def create_key(*args: str) -> list[str]:
    out, err = StringIO(), StringIO()
    call_command("asyncqueue_create_api_key", *args, stdout=out, stderr=err)
    assert err.getvalue() == ""
    return out.getvalue().splitlines()


def test_creates_team_and_prints_the_key_last() -> None:
    lines = create_key("--team", "Acme Corp", "--name", "billing")
    raw = lines[-1]
    team = Team.objects.get(name="Acme Corp")
    key = ApiKey.objects.get()
    assert key.team == team
    assert key.name == "billing"
    assert raw.startswith("aq_live_")
    assert raw.strip() == raw
    assert lines[:-1] == [
        "Created team 'Acme Corp'.",
        f"Created live API key {key.prefix}… for team 'Acme Corp'. Store it now: it is not "
        "shown again.",
    ]
    assert key.prefix == raw[: len(key.prefix)]
    assert key.digest == tokens.digest(raw)


def test_printed_key_authenticates_against_the_api() -> None:
    raw = create_key("--team", "acme")[-1]
    team = Team.objects.get(name="acme")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.post("/v1/tasks", {"targetUrl": "https://example.com/"}, format="json")
    assert response.status_code == 201, response.content
    assert Task.objects.get().team == team
    other = APIClient()
    other.credentials(HTTP_X_API_KEY=raw)
    assert other.get("/v1/tasks").json()["pagination"]["total"] == 1


def test_raw_key_is_stored_nowhere() -> None:
    raw = create_key("--team", "acme")[-1]
    for row in ApiKey.objects.values():
        for column, value in row.items():
            assert raw not in json.dumps(value, default=str), column
    for row in Team.objects.values():
        assert raw not in json.dumps(row, default=str)


def test_existing_team_is_reused() -> None:
    first = create_key("--team", "acme", "--name", "one")[-1]
    lines = create_key("--team", "acme", "--name", "two")
    assert Team.objects.count() == 1
    assert ApiKey.objects.filter(team__name="acme").count() == 2
    assert not any(line.startswith("Created team") for line in lines)
    assert lines[-1] != first


def test_team_name_is_trimmed() -> None:
    create_key("--team", "  acme  ")
    assert list(Team.objects.values_list("name", flat=True)) == ["acme"]


def test_name_is_optional() -> None:
    create_key("--team", "acme")
    assert ApiKey.objects.get().name == ""


def test_prefix_comes_from_settings() -> None:
    with override_settings(ASYNCQUEUE={"API_KEY_PREFIX": "acme_"}):
        raw = create_key("--team", "acme")[-1]
    assert raw.startswith("acme_live_")  # the prefix, then the mode
    assert ApiKey.objects.get().prefix == raw[: len("acme_live_") + tokens.VISIBLE_PREFIX_CHARS]


def test_missing_team_is_an_error() -> None:
    with pytest.raises(CommandError) as excinfo:
        create_key("--name", "x")
    assert str(excinfo.value) == "Error: the following arguments are required: --team"
    assert Team.objects.count() == 0
    assert ApiKey.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--team", ""], "--team must be 1-100 characters."),
        (["--team", "   "], "--team must be 1-100 characters."),
        (["--team", "t" * 101], "--team must be 1-100 characters."),
        (["--team", "acme", "--name", "n" * 101], "--name must be at most 100 characters."),
    ],
    ids=["empty", "blank", "team-too-long", "name-too-long"],
)
def test_bad_arguments_are_command_errors(args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        create_key(*args)
    assert str(excinfo.value) == message
    assert Team.objects.count() == 0
    assert ApiKey.objects.count() == 0


def test_limits_are_inclusive() -> None:
    create_key("--team", "t" * 100, "--name", "n" * 100)
    assert ApiKey.objects.get().team.name == "t" * 100


def test_help_text_exists() -> None:
    from asyncqueue_django.management.commands.asyncqueue_create_api_key import Command

    assert "API key" in Command.help


def test_keys_are_unique_across_runs() -> None:
    keys = {create_key("--team", "acme")[-1] for _ in range(5)}
    assert len(keys) == 5
