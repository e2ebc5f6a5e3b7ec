"""``manage.py asyncqueue_install_beat``: the sweeps as django-celery-beat ``PeriodicTask`` rows."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from asyncqueue_django.beat import RECOVERY_INTERVAL, SWEEP_INTERVAL, beat_schedule


class Command(BaseCommand):
    help = (
        "Install (or update) the asyncqueue sweeps as django-celery-beat PeriodicTask rows, for "
        "projects that run beat with the DatabaseScheduler. Idempotent: re-running updates the "
        "rows in place and never duplicates them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sweep-interval",
            type=float,
            default=SWEEP_INTERVAL,
            help=f"Seconds between expiry/due sweeps (default {SWEEP_INTERVAL:g}).",
        )
        parser.add_argument(
            "--recovery-interval",
            type=float,
            default=RECOVERY_INTERVAL,
            help=f"Seconds between recovery sweeps (default {RECOVERY_INTERVAL:g}).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Show, change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        sweep, recovery = options["sweep_interval"], options["recovery_interval"]
        if sweep < 1 or recovery < 1:
            raise CommandError("Intervals must be at least 1 second.")
        schedule = beat_schedule(sweep_interval=sweep, recovery_interval=recovery)
        with transaction.atomic():
            for name, entry in schedule.items():
                seconds = int(entry["schedule"])
                if options["dry_run"]:
                    self.stdout.write(f"would install {name}: {entry['task']} every {seconds}s")
                    continue
                interval, _ = IntervalSchedule.objects.get_or_create(
                    every=seconds, period=IntervalSchedule.SECONDS
                )
                _, created = PeriodicTask.objects.update_or_create(
                    name=name,
                    defaults={
                        "task": entry["task"],
                        "interval": interval,
                        "crontab": None,
                        "solar": None,
                        "clocked": None,
                        "enabled": True,
                        "expire_seconds": seconds,
                        "kwargs": json.dumps({}),
                    },
                )
                verb = "installed" if created else "updated"
                self.stdout.write(f"{verb} {name}: {entry['task']} every {seconds}s")
