"""``manage.py asyncqueue_rotate_vault_key [--dry-run]``: re-encrypt the Token Vault under the
newest key of ``ASYNCQUEUE['VAULT_KEYS']``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from asyncqueue_django import services
from asyncqueue_django.exceptions import VaultNotConfigured


class Command(BaseCommand):
    help = (
        "Re-encrypt every Token Vault value under the newest key (the first of "
        "ASYNCQUEUE['VAULT_KEYS']). Rotation: put a new key first in VAULT_KEYS, deploy, run "
        "this, then remove the old keys. --dry-run checks that every value decrypts and "
        "writes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check that every value decrypts with the configured keys; write nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = bool(options["dry_run"])
        try:
            count = services.rotate_keys(dry_run=dry_run)
        except VaultNotConfigured as exc:
            raise CommandError(exc.message) from None
        except services.UndecryptableToken as exc:
            raise CommandError(f"{exc} Nothing more was re-encrypted.") from None
        if dry_run:
            self.stdout.write(f"{count} vault token(s) decrypt and would be re-encrypted.")
        else:
            self.stdout.write(f"Re-encrypted {count} vault token(s) under the newest key.")
