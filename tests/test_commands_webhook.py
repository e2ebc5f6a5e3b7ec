"""``asyncqueue_webhook_secret``: print a team's secret, or rotate it."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from asyncqueue_django import services, signing
from asyncqueue_django.models import Team

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out, err = StringIO(), StringIO()
    call_command("asyncqueue_webhook_secret", *args, stdout=out, stderr=err)
    assert err.getvalue() == ""
    return out.getvalue().splitlines()


def test_prints_the_current_secret_alone_on_the_last_line(team: Team) -> None:
    lines = run("--team", "acme")
    assert lines[-1] == team.webhook_secret
    assert lines[-1].startswith("whsec_")
    assert len(signing.standard_key(lines[-1])) >= 24
    assert team.webhook_secret not in "\n".join(lines[:-1])


def test_rotate_prints_the_new_secret_and_keeps_the_old_one_signing(team: Team) -> None:
    old = team.webhook_secret
    lines = run("--team", "acme", "--rotate")
    new = lines[-1]
    team.refresh_from_db()
    assert new == team.webhook_secret != old
    assert team.signing_secrets(timezone.now()) == [new, old]
    assert "keeps signing until" in lines[0]
    assert old not in "\n".join(lines)
    assert new not in "\n".join(lines[:-1])
    assert run("--team", "acme")[-1] == new


def test_rotate_without_overlap_says_so(team: Team, settings: object) -> None:
    settings.ASYNCQUEUE = {**settings.ASYNCQUEUE, "WEBHOOK_SECRET_OVERLAP": 0}  # type: ignore[attr-defined]
    lines = run("--team", "acme", "--rotate")
    assert "no longer signs" in lines[0]
    team.refresh_from_db()
    assert team.signing_secrets(timezone.now()) == [lines[-1]]


def test_unknown_team_is_a_command_error(team: Team) -> None:
    with pytest.raises(CommandError, match="No team named 'nope'"):
        run("--team", "nope")
    assert Team.objects.count() == 1  # never creates a team


def test_team_is_required() -> None:
    with pytest.raises(CommandError, match="--team"):
        run()


def test_name_is_trimmed(team: Team) -> None:
    assert run("--team", " acme ")[-1] == team.webhook_secret


def test_other_teams_are_untouched(team: Team) -> None:
    other, _ = services.get_or_create_team("other")
    before = other.webhook_secret
    run("--team", "acme", "--rotate")
    other.refresh_from_db()
    assert other.webhook_secret == before
    assert other.previous_webhook_secret == ""
