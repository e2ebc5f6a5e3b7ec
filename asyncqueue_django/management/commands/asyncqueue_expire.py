"""``manage.py asyncqueue_expire [--dry-run]``: one expiry sweep, now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from asyncqueue_django import services
from asyncqueue_django.models import Task


class Command(BaseCommand):
    help = (
        "Run one expiry sweep now (what beat runs every few seconds): waiting tasks past their "
        "waitDeadline move to 'timeout', each with its onComplete event. One sweep handles a "
        "bounded number of batches (ASYNCQUEUE['SWEEP_BATCH_SIZE'] rows each); run it again if "
        "overdue tasks remain."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count the overdue tasks; change nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        if options["dry_run"]:
            overdue = Task.objects.overdue(now).count()
            self.stdout.write(f"Would time out {overdue} overdue waiting task(s) (dry run).")
            return
        expired = services.expire_overdue(now)
        self.stdout.write(f"Timed out {expired} overdue waiting task(s).")
        remaining = Task.objects.overdue(now).count()
        if remaining:
            self.stdout.write(f"{remaining} overdue task(s) remain; run the command again.")
