"""``manage.py asyncqueue_webhook_secret --team NAME [--rotate]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from asyncqueue_django import services
from asyncqueue_django.conf import app_settings
from asyncqueue_django.models import Team


class Command(BaseCommand):
    help = (
        "Print a team's webhook signing secret (whsec_…), alone on the last line of stdout. "
        "With --rotate, replace it first: the previous secret keeps signing next to the new "
        "one for ASYNCQUEUE['WEBHOOK_SECRET_OVERLAP'] seconds, so receivers can switch."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="Name of an existing team.")
        parser.add_argument(
            "--rotate", action="store_true", help="Generate a new secret and print it."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["team"].strip()
        team = Team.objects.filter(name=name).first()
        if team is None:
            raise CommandError(f"No team named {name!r}.")
        if options["rotate"]:
            now = timezone.now()
            secret = services.rotate_webhook_secret(team, now=now)
            expires = team.previous_secret_expires_at
            if expires is not None:
                self.stdout.write(
                    f"Rotated the webhook secret of team {team.name!r}. The previous secret "
                    f"keeps signing until {expires.isoformat()} "
                    f"({app_settings.WEBHOOK_SECRET_OVERLAP}s)."
                )
            else:
                self.stdout.write(
                    f"Rotated the webhook secret of team {team.name!r}. The previous secret "
                    "no longer signs (WEBHOOK_SECRET_OVERLAP is 0)."
                )
        else:
            secret = team.webhook_secret
            self.stdout.write(f"Webhook secret of team {team.name!r}:")
        self.stdout.write(secret)
