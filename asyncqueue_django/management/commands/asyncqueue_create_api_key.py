"""``manage.py asyncqueue_create_api_key --team NAME [--name LABEL] [--mode live|test]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from asyncqueue_django import services
from asyncqueue_django.states import KeyMode


class Command(BaseCommand):
    help = (
        "Create an API key for a team (creating the team if needed). The raw key is printed "
        "once, alone on the last line of stdout; only its digest is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="Team name (created if missing).")
        parser.add_argument("--name", default="", help="A label for the key, e.g. 'billing'.")
        parser.add_argument(
            "--mode",
            choices=KeyMode.values,
            default=KeyMode.LIVE.value,
            help="live (default): aq_live_… keys. test: aq_test_… keys, whose tasks are "
            "sandbox tasks that never call their target.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        team_name = options["team"].strip()
        if not team_name or len(team_name) > 100:
            raise CommandError("--team must be 1-100 characters.")
        if len(options["name"]) > 100:
            raise CommandError("--name must be at most 100 characters.")
        team, created = services.get_or_create_team(team_name)
        issued = services.create_api_key(team, name=options["name"], mode=options["mode"])
        if created:
            self.stdout.write(f"Created team {team.name!r}.")
        self.stdout.write(
            f"Created {issued.api_key.mode} API key {issued.api_key.prefix}… for team "
            f"{team.name!r}. "
            "Store it now: it is not shown again."
        )
        self.stdout.write(issued.raw_key)
