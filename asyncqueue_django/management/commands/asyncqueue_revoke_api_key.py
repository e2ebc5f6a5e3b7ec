"""``manage.py asyncqueue_revoke_api_key PREFIX_OR_ID [--dry-run]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from asyncqueue_django import services
from asyncqueue_django.models import ApiKey

ELLIPSES = ("…", "...")  # keys are displayed as "<prefix>…"; accept a pasted display form


class Command(BaseCommand):
    help = (
        "Revoke an API key, found by its visible prefix (as shown when it was created and in "
        "the admin, e.g. 'aq_Ab12Cd34') or by its numeric id. The key is refused from the next "
        "request on. Revoking a key that is already revoked changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", metavar="PREFIX_OR_ID", help="Visible key prefix or key id.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show which key would be revoked; change nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ref = options["key"].strip()
        for ellipsis in ELLIPSES:
            ref = ref.removesuffix(ellipsis)
        if not ref:
            raise CommandError("PREFIX_OR_ID must not be empty.")
        query = Q(prefix=ref)
        if ref.isdigit() and ref.isascii():
            query |= Q(pk=int(ref))
        matches = list(ApiKey.objects.filter(query).select_related("team").order_by("pk"))
        if not matches:
            raise CommandError(f"No API key has the prefix or id {ref!r}.")
        active = [key for key in matches if key.is_active]
        if len(active) > 1:
            listed = ", ".join(self._describe(key) for key in active)
            raise CommandError(
                f"{ref!r} matches {len(active)} active API keys ({listed}); revoke one by its id."
            )
        if not active:
            key = matches[-1]
            self.stdout.write(
                f"API key {self._describe(key)} was already revoked at "
                f"{key.revoked_at:%Y-%m-%d %H:%M:%S %Z}; nothing changed."
            )
            return
        key = active[0]
        if options["dry_run"]:
            self.stdout.write(f"Would revoke API key {self._describe(key)} (dry run).")
            return
        if services.revoke_api_key(key):
            self.stdout.write(f"Revoked API key {self._describe(key)}.")
        else:  # revoked by someone else between the lookup and the update
            self.stdout.write(
                f"API key {self._describe(key)} was already revoked; nothing changed."
            )

    @staticmethod
    def _describe(key: ApiKey) -> str:
        label = f" {key.name!r}" if key.name else ""
        return f"{key.prefix}…{label} (id {key.pk}, team {key.team.name!r})"
