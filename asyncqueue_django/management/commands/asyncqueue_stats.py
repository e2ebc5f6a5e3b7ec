"""``manage.py asyncqueue_stats [--since HOURS] [--team NAME] [--json]``."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count, DurationField, ExpressionWrapper, F, QuerySet
from django.utils import timezone

from asyncqueue_django.models import Attempt, Task, Team
from asyncqueue_django.states import TaskStatus

DEFAULT_HOURS = 24.0
MAX_HOURS = 24.0 * 366 * 10
PERCENTILES = (50, 95)


def nearest_rank(qs: QuerySet[Any], field: str, count: int, percentile: float) -> Any:
    """The ``percentile`` (nearest-rank method) of ``field`` over ``qs``, which has ``count``
    rows: one ``ORDER BY field LIMIT 1 OFFSET k`` query. Exact, portable (SQLite and
    PostgreSQL alike), and no rows are fetched into Python whatever the window's size."""
    index = max(1, math.ceil(percentile / 100 * count)) - 1
    return qs.order_by(field).values_list(field, flat=True)[index]


class Command(BaseCommand):
    help = (
        "Show task statistics over a window (default: the last 24 hours): task counts by "
        "status and by queue (tasks created in the window), p50/p95 callback duration (attempts "
        "started in the window, worker-lost attempts excluded) and p50/p95 time to start "
        "(first claim minus creation, for tasks created in the window that have started; "
        "requested delays count in it). Percentiles use the nearest-rank method and are exact: "
        "the database sorts the window and returns the one row at each rank."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            type=float,
            default=DEFAULT_HOURS,
            metavar="HOURS",
            help=f"Window length in hours, up to {MAX_HOURS:g} (default {DEFAULT_HOURS:g}).",
        )
        parser.add_argument("--team", metavar="NAME", help="Only this team's tasks.")
        parser.add_argument(
            "--json", action="store_true", help="Print one JSON object instead of a table."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        hours = options["since"]
        if not math.isfinite(hours) or not 0 < hours <= MAX_HOURS:
            raise CommandError(f"--since must be more than 0 and at most {MAX_HOURS:g} hours.")
        team: Team | None = None
        if options["team"] is not None:
            team = Team.objects.filter(name=options["team"].strip()).first()
            if team is None:
                raise CommandError(f"No team is called {options['team']!r}.")
        since = timezone.now() - timedelta(hours=hours)
        stats = self.collect(since, team)
        if options["json"]:
            self.stdout.write(json.dumps(stats, indent=2))
        else:
            self.print_table(stats, hours)

    def collect(self, since: datetime, team: Team | None) -> dict[str, Any]:
        tasks = Task.objects.filter(created_at__gte=since)
        attempts = Attempt.objects.filter(started_at__gte=since, duration_ms__isnull=False)
        if team is not None:
            tasks = tasks.for_team(team)
            attempts = attempts.filter(task__team=team)

        by_status = dict.fromkeys(TaskStatus.values, 0)
        for row in tasks.order_by().values("status").annotate(n=Count("pk")):
            by_status[row["status"]] = row["n"]
        queues = tasks.order_by().values("queue").annotate(n=Count("pk")).order_by("-n", "queue")
        by_queue = {row["queue"]: row["n"] for row in queues}

        attempts = attempts.order_by()
        n_attempts = attempts.count()
        duration: dict[str, Any] = {"count": n_attempts}
        for p in PERCENTILES:
            duration[f"p{p}"] = (
                nearest_rank(attempts, "duration_ms", n_attempts, p) if n_attempts else None
            )

        started = (
            tasks.filter(started_at__isnull=False)
            .order_by()
            .annotate(
                time_to_start=ExpressionWrapper(
                    F("started_at") - F("created_at"), output_field=DurationField()
                )
            )
        )
        n_started = started.count()
        to_start: dict[str, Any] = {"count": n_started}
        for p in PERCENTILES:
            value = nearest_rank(started, "time_to_start", n_started, p) if n_started else None
            # A clock-skewed worker can claim "before" creation; that is 0 s, not negative.
            to_start[f"p{p}"] = None if value is None else round(max(0.0, value.total_seconds()), 3)

        return {
            "since": since.isoformat(),
            "team": team.name if team else None,
            "tasks": sum(by_status.values()),
            "byStatus": by_status,
            "byQueue": by_queue,
            "callbackDurationMs": duration,
            "timeToStartSeconds": to_start,
        }

    def print_table(self, stats: dict[str, Any], hours: float) -> None:
        scope = f"team {stats['team']!r}" if stats["team"] else "all teams"
        out = self.stdout
        out.write(f"Window: last {hours:g} h (since {stats['since']}), {scope}")
        out.write(f"Tasks created: {stats['tasks']}")
        out.write("")
        out.write("By status:")
        for status, n in stats["byStatus"].items():
            out.write(f"  {status:<12} {n:>10}")
        out.write("")
        out.write("By queue:")
        if not stats["byQueue"]:
            out.write("  (no tasks)")
        width = max([12, *(len(q) for q in stats["byQueue"])])
        for queue, n in stats["byQueue"].items():
            out.write(f"  {queue:<{width}} {n:>10}")
        out.write("")
        d, s = stats["callbackDurationMs"], stats["timeToStartSeconds"]
        out.write(f"Callback duration ({d['count']} attempts):")
        for p in PERCENTILES:
            value = d[f"p{p}"]
            out.write(f"  p{p:<3} {'-' if value is None else f'{value} ms':>14}")
        out.write(f"Time to start ({s['count']} started tasks):")
        for p in PERCENTILES:
            value = s[f"p{p}"]
            out.write(f"  p{p:<3} {'-' if value is None else f'{value:.3f} s':>14}")
