"""``manage.py asyncqueue_prune --older-than DAYS [--batch-size N] [--dry-run]``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db.models import Count
from django.utils import timezone

from asyncqueue_django import services

MAX_DAYS = 36_500
MAX_BATCH_SIZE = 10_000
DEFAULT_BATCH_SIZE = 500


class ProgressBar:
    """A plain progress bar on ``out``: redrawn in place on a terminal, and one line per
    step of 10 % otherwise (so logs of a cron job stay short)."""

    WIDTH = 30

    def __init__(self, out: OutputWrapper, total: int) -> None:
        self.out = out
        self.total = max(total, 1)
        self.tty = out.isatty()
        self.last_step = -1

    def update(self, done: int) -> None:
        fraction = min(done / self.total, 1.0)
        filled = int(fraction * self.WIDTH)
        line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{self.total} ({fraction:.0%})"
        if self.tty:
            self.out.write(f"\r{line}", ending="")
            self.out.flush()
            return
        step = int(fraction * 10)
        if step > self.last_step:
            self.last_step = step
            self.out.write(line)

    def close(self) -> None:
        if self.tty:
            self.out.write("")


class Command(BaseCommand):
    help = (
        "Delete finished tasks (completed, failed, timeout, cancelled; never pending, delayed, "
        "processing or waiting) that finished more than DAYS days ago, with their attempt "
        "history. Works in batches, each in its own transaction, so it can be interrupted and "
        "re-run. Tasks whose Idempotency-Key window is still open are kept until it closes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            required=True,
            metavar="DAYS",
            help=f"Delete tasks that finished more than DAYS days ago (0-{MAX_DAYS}).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            metavar="N",
            help=(
                f"Tasks deleted per transaction (1-{MAX_BATCH_SIZE}, default {DEFAULT_BATCH_SIZE})."
            ),
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days, batch_size = options["older_than"], options["batch_size"]
        if not 0 <= days <= MAX_DAYS:
            raise CommandError(f"--older-than must be between 0 and {MAX_DAYS} days.")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}.")
        now = timezone.now()
        cutoff = now - timedelta(days=days)
        candidates = services.prunable_tasks(cutoff, now=now)
        if options["dry_run"]:
            counts = dict(
                candidates.order_by().values_list("status").annotate(n=Count("pk")).order_by()
            )
            total = sum(counts.values())
            detail = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))
            self.stdout.write(
                f"Would delete {total} finished task(s) that finished before "
                f"{cutoff.isoformat()}" + (f" ({detail})" if detail else "") + " (dry run)."
            )
            return
        total = candidates.count()
        self.stdout.write(
            f"Deleting {total} finished task(s) that finished before {cutoff.isoformat()}, "
            f"{batch_size} per batch."
        )
        bar = ProgressBar(self.stdout, total) if total and options["verbosity"] >= 1 else None
        deleted = services.prune_finished(
            cutoff, batch_size, now=now, progress=bar.update if bar else None
        )
        if bar:
            bar.close()
        self.stdout.write(f"Deleted {deleted} finished task(s).")
