"""The admin dashboard's and ``/metrics``' queries on a large table, with their plans.

``python -m bench.dashboard_plan --pg-url postgres://postgres@127.0.0.1:5432/aq_big``

Creates the database if it is missing, migrates it, fills it with ``--tasks`` tasks (default
one million, spread over ``--days`` days, set-based SQL: about a minute), one attempt per
finished task and a webhook event for one task in ten, then times the dashboard's context
(every query it runs) for a 3 h and a 24 h window and the ``/metrics`` collection, and prints
``EXPLAIN (ANALYZE, BUFFERS)`` of each dashboard query. ``--drop`` drops the database at the
end. PostgreSQL only. Results: ``bench/results/dashboard_plan.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

RESULTS = Path(__file__).resolve().parent / "results" / "dashboard_plan.json"


def _admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres")), parts.path.lstrip("/")


def ensure_database(url: str) -> None:
    import psycopg

    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


GENERATE = """
INSERT INTO asyncqueue_team (name, webhook_secret, previous_webhook_secret, created_at)
VALUES ('bench', 'whsec', '', now()) ON CONFLICT (name) DO NOTHING;

WITH rows AS (
    SELECT i,
           now() - (%(days)s * interval '1 day') * (i::float / %(n)s) AS created,
           i %% 200 AS kind,
           md5(i::text) AS h
    FROM generate_series(1, %(n)s) AS i
)
INSERT INTO asyncqueue_task (
    id, team_id, status, target_url, method, headers, timeout, priority, queue, max_retries,
    retry_backoff, retry_count, attempt_count, next_attempt_at, dispatched_at, leased_by,
    lease_expires_at, wait_for_signal, max_wait_time, wait_deadline, early_signal_status,
    early_signal_error, metadata, error, idempotency_fingerprint, traceparent, tracestate,
    created_at, updated_at, started_at, completed_at
)
SELECT
    (lpad(to_hex((extract(epoch FROM created) * 1000)::bigint), 12, '0') || '7'
        || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
    (SELECT id FROM asyncqueue_team WHERE name = 'bench'),
    CASE WHEN kind < 170 THEN 'completed' WHEN kind < 180 THEN 'failed'
         WHEN kind < 184 THEN 'timeout' WHEN kind < 190 THEN 'cancelled'
         WHEN kind < 192 THEN 'pending' WHEN kind < 194 THEN 'delayed'
         WHEN kind < 195 THEN 'processing' ELSE 'waiting' END,
    'https://example.com/hook', 'POST', '{}', 30, 5,
    (ARRAY['default', 'emails', 'reports', 'media'])[1 + i %% 4], 3, 'exponential', 0, 1,
    CASE WHEN kind >= 190 AND kind < 194 THEN created + interval '1 second' END,
    created, '',
    CASE WHEN kind = 194 THEN now() + interval '5 minutes' END,
    kind >= 195, 86400,
    CASE WHEN kind >= 195 THEN created + interval '1 day' END,
    '', '', '{}', '', '', '', '',
    created, created, created,
    CASE WHEN kind < 190 THEN created + interval '2 seconds' END
FROM rows;

INSERT INTO asyncqueue_attempt (
    task_id, number, started_at, duration_ms, status_code, response_headers, response_body,
    error, outcome, worker
)
SELECT id, 1, created_at + interval '1 second',
       (20 + (abs(hashtext(id::text)) %% 2000))::int, 200, '{}', '', '', 'succeeded', ''
FROM asyncqueue_task WHERE completed_at IS NOT NULL;

INSERT INTO asyncqueue_webhookdelivery (
    id, task_id, event, url, status, body, attempt_count, retry_count, next_attempt_at,
    leased_by, last_error, created_at, updated_at, delivered_at
)
SELECT id, id, 'task.' || status, 'https://example.com/done',
       CASE WHEN abs(hashtext(id::text)) %% 50 = 0 THEN 'pending' ELSE 'delivered' END,
       '', 1, 0, completed_at + interval '5 seconds', '', '', completed_at, completed_at,
       completed_at + interval '1 second'
FROM asyncqueue_task WHERE completed_at IS NOT NULL AND abs(hashtext(id::text)) %% 10 = 0;

UPDATE asyncqueue_webhookdelivery SET delivered_at = NULL WHERE status = 'pending';
"""


def generate(n: int, days: float) -> float:
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(GENERATE, {"n": n, "days": days})
    connection.set_autocommit(True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return time.monotonic() - started


def timed_context(hours: int, rounds: int) -> dict[str, Any]:
    """Wall time of the dashboard's context, and the database time of each of its queries."""
    from django.db import connection
    from django.utils import timezone

    from asyncqueue_django.admin.dashboard import build_context

    walls, sql_times, queries = [], [], []
    for _ in range(rounds):
        per_query: list[tuple[str, float]] = []

        def timer(
            execute: Any,
            sql: str,
            params: Any,
            many: bool,
            context: Any,
            per_query: list[tuple[str, float]] = per_query,
        ) -> Any:
            t0 = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                per_query.append(
                    (connection.ops.compose_sql(sql, params), time.perf_counter() - t0)
                )

        t0 = time.perf_counter()
        with connection.execute_wrapper(timer):
            build_context(timezone.now(), hours)
        walls.append(time.perf_counter() - t0)
        sql_times.append(sum(t for _, t in per_query))
        queries = per_query
    return {
        "hours": hours,
        "queries": len(queries),
        "wall_s_median": statistics.median(walls),
        "sql_s_median": statistics.median(sql_times),
        "per_query_s": [round(t, 4) for _, t in queries],
        "sql": [q for q, _ in queries],
    }


def explain(sql: str) -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0][0]
    nodes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        label = node["Node Type"]
        if "Index Name" in node:
            label += f" using {node['Index Name']}"
        elif "Relation Name" in node:
            label += f" on {node['Relation Name']}"
        nodes.append(label)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    return {"execution_ms": plan["Execution Time"], "nodes": nodes}


def timed_metrics(rounds: int) -> float:
    from asyncqueue_django import metrics

    times = []
    for _ in range(rounds):
        metrics.clear_cache()
        t0 = time.perf_counter()
        metrics.render()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dashboard_plan", description=__doc__)
    p.add_argument("--pg-url", required=True, help="a PostgreSQL database of its own")
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument("--days", type=float, default=7.0, help="the tasks' creation spread")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reuse", action="store_true", help="keep the rows already there")
    p.add_argument("--drop", action="store_true", help="drop the database at the end")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if not args.pg_url.startswith("postgres"):
        p.error("--pg-url must be a PostgreSQL URL")

    os.environ["DATABASE_URL"] = args.pg_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    ensure_database(args.pg_url)
    import django

    django.setup()
    from django.core.management import call_command

    from asyncqueue_django.models import Task

    call_command("migrate", verbosity=0)
    result: dict[str, Any] = {}
    if not args.reuse:
        if Task.objects.exists():
            p.error("the database already has tasks: use --reuse, or a fresh database")
        result["generate_s"] = round(generate(args.tasks, args.days), 1)
    result["tasks"] = Task.objects.count()
    print(f"tasks: {result['tasks']}")
    for hours in (3, 24):
        ctx = timed_context(hours, args.rounds)
        ctx["plans"] = [explain(sql) for sql in ctx.pop("sql")]
        result[f"dashboard_{hours}h"] = ctx
        print(
            f"dashboard {hours:>2} h: {ctx['queries']} queries, "
            f"SQL {ctx['sql_s_median'] * 1000:.0f} ms, "
            f"wall {ctx['wall_s_median'] * 1000:.0f} ms (median of {args.rounds})"
        )
        for plan in ctx["plans"]:
            print(f"  {plan['execution_ms']:8.1f} ms  {' > '.join(plan['nodes'][:4])}")
    result["metrics_s_median"] = timed_metrics(args.rounds)
    print(f"/metrics collection: {result['metrics_s_median'] * 1000:.0f} ms (median)")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    if args.drop:
        drop_database(args.pg_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
