"""``manage.py asyncqueue_recover [--dry-run]``: one recovery sweep, now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from asyncqueue_django import services


class Command(BaseCommand):
    help = (
        "Run one recovery sweep now (what beat runs periodically): processing tasks whose "
        "worker lease expired are retried or failed, due tasks whose message was lost are "
        "dispatched again, and delayed tasks that came due are dispatched; the same for "
        "webhook deliveries. Prints the counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be done; change nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        if options["dry_run"]:
            # The sweeps' own querysets, counted: the same criteria, nothing changed.
            pending = services.pending_sweeps(now)
            task, webhook = pending["task"], pending["webhook"]
            self.stdout.write("Dry run; nothing changed. Would handle:")
            self._report(
                task["stale"],
                task["lost"],
                task["due"],
                webhook["stale"],
                webhook["lost"],
                webhook["due"],
            )
            return
        # Same order as the beat tasks: leases first, so a recovered task can be re-sent.
        stale = services.recover_stale_leases(now)
        lost = services.redispatch_lost(now)
        due = services.dispatch_due(now)
        webhooks = (
            services.recover_stale_webhooks(now),
            services.redispatch_lost_webhooks(now),
            services.dispatch_due_webhooks(now),
        )
        self._report(stale, lost, due, *webhooks)

    def _report(
        self, stale: int, lost: int, due: int, w_stale: int, w_lost: int, w_due: int
    ) -> None:
        self.stdout.write(f"  stale leases recovered: {stale}")
        self.stdout.write(f"  lost dispatches re-sent: {lost}")
        self.stdout.write(f"  due tasks dispatched:    {due}")
        self.stdout.write(f"  webhook leases recovered: {w_stale}")
        self.stdout.write(f"  webhook messages re-sent: {w_lost}")
        self.stdout.write(f"  due webhooks dispatched:  {w_due}")
