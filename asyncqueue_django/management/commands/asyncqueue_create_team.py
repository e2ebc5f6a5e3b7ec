"""``manage.py asyncqueue_create_team NAME [--if-missing]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from asyncqueue_django import services

MAX_NAME_LENGTH = 100  # Team.name max_length


class Command(BaseCommand):
    help = (
        "Create a team (the tenant API keys and tasks belong to), with a fresh webhook secret. "
        "Fails if a team with that name exists, unless --if-missing is given. Create its API "
        "keys with asyncqueue_create_api_key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "name", help="Team name, 1-100 characters (surrounding spaces trimmed)."
        )
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="Succeed without changes when the team already exists (for provisioning scripts).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise CommandError(f"NAME must be 1-{MAX_NAME_LENGTH} characters.")
        team, created = services.get_or_create_team(name)
        if created:
            self.stdout.write(f"Created team {team.name!r} (id {team.pk}).")
        elif options["if_missing"]:
            self.stdout.write(f"Team {team.name!r} already exists (id {team.pk}); nothing changed.")
        else:
            raise CommandError(
                f"Team {team.name!r} already exists (id {team.pk}). "
                "Use --if-missing to accept that."
            )
