"""``manage.py asyncqueue_queues list|pause|resume [NAME] [--team NAME]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from asyncqueue_django import services
from asyncqueue_django.models import Team
from asyncqueue_django.validators import InvalidInput


class Command(BaseCommand):
    help = (
        "List queues (open tasks by status, oldest pending age, paused), or pause/resume one. "
        "Without --team a pause stops every team's tasks on the queue (the operator's switch); "
        "with --team only that team's, as POST /v1/queues/{name}/pause does. A paused queue "
        "accepts tasks and starts none; waiting tasks still take signals and time out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "pause", "resume"])
        parser.add_argument("name", nargs="?", help="The queue (for pause and resume).")
        parser.add_argument("--team", help="Name of an existing team (default: every team).")

    def handle(self, *args: Any, **options: Any) -> None:
        team = None
        if options["team"] is not None:
            name = options["team"].strip()
            team = Team.objects.filter(name=name).first()
            if team is None:
                raise CommandError(f"No team named {name!r}.")
        action, queue = options["action"], options["name"]
        if action == "list":
            self._list(team)
            return
        if not queue:
            raise CommandError(f"{action} needs a queue name.")
        try:
            switch = services.pause_queue if action == "pause" else services.resume_queue
            info = switch(team, queue)
        except InvalidInput as exc:
            raise CommandError(f"Queue {queue!r}: {exc.message}") from None
        scope = f"team {team.name!r}" if team is not None else "every team"
        state = "paused" if info.paused else "running"
        self.stdout.write(f"Queue {queue!r} for {scope}: {state}.")

    def _list(self, team: Team | None) -> None:
        queues = services.list_queues(team)
        if not queues:
            self.stdout.write("No queue holds open tasks.")
            return
        header = (
            "queue",
            "state",
            "pending",
            "delayed",
            "processing",
            "waiting",
            "polling",
            "oldest (s)",
        )
        rows = [
            (
                q.name,
                "paused" if q.paused else "running",
                str(q.pending),
                str(q.delayed),
                str(q.processing),
                str(q.waiting),
                str(q.polling),
                f"{q.oldest_pending_age:.1f}",
            )
            for q in queues
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
