"""5. Expiry scaling: 10,000 overdue waiting tasks among 100,000 and among 1,000,000 waiting
tasks; the time ``services.expire_overdue()`` takes (called until it returns 0) to time them
all out. The floor is the same sweep on the smaller table: cost should follow the number of
overdue tasks (the partial index ``aq_task_wait_deadline_idx``), not the table.

Rows are inserted server-side (``INSERT … SELECT`` over a generated series) from a template
row built by the model itself, so columns added later still get their defaults. Between
repetitions the overdue rows are put back to ``waiting`` and the table is vacuumed.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from bench import harness

NAME = "expiry"
TITLE = "Expiry scaling: time to expire the overdue waits vs table size"
FLOOR = "the same sweep over the same overdue count on the smallest table"
GOAL = "time(1M) / time(100k) ≤ 1.3"
BACKENDS = ("pg", "embedded")
INDEX = "aq_task_wait_deadline_idx"


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--expiry-sizes", default="100000,1000000", help="waiting tasks per table (comma list)"
    )
    group.add_argument("--expiry-overdue", type=int, default=10000, help="overdue among them")


def _insert(team: Any, count: int, overdue: bool, now: Any) -> None:
    """``count`` waiting tasks, server-side, deadlines spread past (overdue) or future."""
    from django.db import connection

    from asyncqueue_django.models import Task

    if count <= 0:
        return
    base = now - timedelta(hours=1) if overdue else now + timedelta(days=1)
    template = Task(
        team=team,
        status="waiting",
        target_url="http://127.0.0.1:9/expiry",
        timeout=30,
        max_retries=3,
        max_wait_time=3600,
        wait_for_signal=True,
        wait_deadline=base,
        attempt_count=1,
        completed_at=None,
    )
    fields = list(Task._meta.concrete_fields)
    pg = connection.vendor == "postgresql"
    columns, exprs, params = [], [], []
    for f in fields:
        columns.append(connection.ops.quote_name(f.column))
        if f.primary_key:
            exprs.append("gen_random_uuid()" if pg else "lower(hex(randomblob(16)))")
            continue
        value = f.get_db_prep_save(f.pre_save(template, add=True), connection)
        if f.name == "wait_deadline" and pg:
            # Distinct deadlines, 1 ms apart, all on the same side of now.
            sign = "-" if overdue else "+"
            exprs.append(f"CAST(%s AS timestamptz) {sign} g * interval '1 millisecond'")
        elif pg:
            exprs.append(f"CAST(%s AS {f.db_type(connection)})")
        else:
            exprs.append("%s")
        params.append(value)
    table = connection.ops.quote_name(Task._meta.db_table)
    if pg:
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"SELECT {', '.join(exprs)} FROM generate_series(1, %s) AS g"
        )
    else:
        sql = (
            f"WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < %s) "
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(exprs)} FROM g"
        )
    params = [*params, count] if pg else [count, *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _vacuum() -> None:
    from django.db import connection

    from asyncqueue_django.models import Task

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f'VACUUM ANALYZE "{Task._meta.db_table}"')
        else:
            cursor.execute("ANALYZE")


def _explain(now: Any, size: int) -> str:
    from django.db import connection, transaction

    from asyncqueue_django.conf import app_settings
    from asyncqueue_django.models import Task

    qs = Task.objects.overdue(now).lock_batch(app_settings.SWEEP_BATCH_SIZE)
    qs = qs.values_list("pk", "max_wait_time")
    with transaction.atomic(), connection.cursor() as cursor:
        sql, params = qs.query.sql_with_params()
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        lines = [" ".join(str(c) for c in row) for row in cursor.fetchall()]
        transaction.set_rollback(True)  # EXPLAIN ANALYZE of FOR UPDATE took row locks
    return f"-- {size:,} waiting tasks\n{sql}\n" + "\n".join(lines)


def run(ctx: harness.Context) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from asyncqueue_django import services
    from asyncqueue_django.models import Task

    sizes = [int(s) for s in ctx.args.expiry_sizes.split(",")]
    overdue = ctx.args.expiry_overdue
    if ctx.smoke:
        sizes, overdue = [2000, 6000], 500
    rounds = ctx.rounds(3)
    team, _ = harness.bench_team()
    now = timezone.now()
    _insert(team, overdue, overdue=True, now=now)
    have = overdue
    per_size: list[dict[str, Any]] = []
    plans: list[str] = []
    for size in sizes:
        t0 = time.monotonic()
        _insert(team, size - have, overdue=False, now=now)
        have = size
        _vacuum()
        ctx.say(f"{size:,} waiting rows ({overdue:,} overdue) in {time.monotonic() - t0:.1f}s")
        plans.append(_explain(timezone.now(), size))
        times = []
        for i in range(rounds + 1):  # the first run warms caches up and is not counted
            t0 = time.perf_counter()
            expired = 0
            while True:
                done = services.expire_overdue()
                expired += done
                if not done:
                    break
            elapsed = time.perf_counter() - t0
            if expired != overdue:
                raise RuntimeError(f"expired {expired}, expected {overdue}")
            if i:
                times.append(elapsed)
            # Put them back for the next repetition (and the next size).
            Task.objects.filter(status="timeout").update(
                status="waiting", completed_at=None, error=""
            )
            _vacuum()
        per_size.append(
            {
                "waiting": size,
                "overdue": overdue,
                "seconds": round(harness.median(times), 4),
                "runs": [round(t, 4) for t in times],
            }
        )
        ctx.say(f"{size:,}: expire {overdue:,} in {harness.median(times):.3f}s (median)")
    base = per_size[0]["seconds"]
    for p in per_size:
        p["ratio"] = round(p["seconds"] / base, 3)
    big = per_size[-1]["ratio"]
    return {
        "vendor": connection.vendor,
        "rounds": rounds,
        "sizes": per_size,
        "ratio_largest_to_smallest": big,
        "goal_holds": big <= 1.3,
        "plan": plans[-1],
        "plans": plans,
        "plan_uses_index": INDEX in plans[-1],
        "per_task_us": round(per_size[-1]["seconds"] / overdue * 1e6, 1),
    }


HEADERS = ["backend", "waiting", "overdue", "seconds", "ratio", "goal ≤ 1.3", "index used"]


def _rows(merged: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, r in merged["backends"].items():
        if "error" in r:
            rows.append([name, r["error"], "", "", "", "", ""])
            continue
        for i, s in enumerate(r["sizes"]):
            last = i == len(r["sizes"]) - 1
            rows.append(
                [r["backend"], f"{s['waiting']:,}", f"{s['overdue']:,}", round(s["seconds"], 3),
                 f"{s['ratio']:.2f}x" + (" (floor)" if i == 0 else ""),
                 ("holds" if r["goal_holds"] else "misses") if last else "",
                 ("yes" if r["plan_uses_index"] else "NO") if last else ""]
            )  # fmt: skip
    return rows


def report(merged: dict[str, Any]) -> str:
    out = [harness.table(HEADERS, _rows(merged))]
    for r in merged["backends"].values():
        if "error" not in r:
            out.append(f"\nquery plan of one sweep batch ({r['backend']}):\n{r['plan']}")
    return "\n".join(out)


def markdown(merged: dict[str, Any]) -> str:
    return harness.markdown_table(HEADERS, _rows(merged))


def chart(merged: dict[str, Any], path: Any) -> None:
    items = [r for r in merged["backends"].values() if "error" not in r]
    with harness.figure(path, 1, TITLE, width=7) as (_fig, axes):
        ax = axes[0]
        for r in items:
            xs = [s["waiting"] for s in r["sizes"]]
            ys = [s["seconds"] for s in r["sizes"]]
            ax.plot(
                xs, ys, marker="o", label=f"{r['backend']} ({r['ratio_largest_to_smallest']:.2f}x)"
            )
        ax.set_xscale("log")
        ax.set_xlabel("waiting tasks in the table (log)")
        ax.set_ylabel(
            f"seconds to expire {items[0]['sizes'][0]['overdue']:,} overdue" if items else "s"
        )
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
