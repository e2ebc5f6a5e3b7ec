"""7. Worker memory: RSS of one worker (the process and its children) while it runs many
tasks, sampled every half second. The floor is the same worker's RSS right after warm-up (the
first 10% of the tasks); the goal is that it grows less than 10% from there to the end.

Tasks are created through ``services.create_task`` in batches of 200 per transaction, at most
``--memory-backlog`` ahead of the callbacks that have arrived.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench import harness

NAME = "memory"
TITLE = "Worker memory: RSS over many tasks"
FLOOR = "the same worker's RSS after warm-up (first 10% of the tasks)"
GOAL = "growth < 10% after warm-up"
BACKENDS = ("pg", "embedded")


def add_arguments(group: Any) -> None:
    group.add_argument("--memory-tasks", type=int, default=100_000, help="tasks (pg)")
    group.add_argument(
        "--memory-tasks-embedded", type=int, default=10_000, help="tasks (embedded: slower)"
    )
    group.add_argument("--memory-pool", default="threads")
    group.add_argument("--memory-concurrency", type=int, default=8)
    group.add_argument("--memory-backlog", type=int, default=2000)


def run(ctx: harness.Context) -> dict[str, Any]:
    from django.db import transaction

    from asyncqueue_django import services

    args = ctx.args
    if ctx.smoke:
        n = 100
    elif ctx.backend.name == "embedded":
        n = args.memory_tasks_embedded
    else:
        n = args.memory_tasks
    team, _ = harness.bench_team()
    samples: list[dict[str, float]] = []
    with (
        harness.TargetServer() as target,
        harness.Worker(
            ctx.log_dir, pool=args.memory_pool, concurrency=args.memory_concurrency
        ) as worker,
    ):
        path = "/mem"
        spec = services.TaskSpec(
            target_url=target.url(path), payload={"orderId": 1}, queue=harness.QUEUE
        )
        stop = threading.Event()
        _, idle_total = worker.rss()

        def sampler() -> None:
            while not stop.is_set():
                main, total = worker.rss()
                samples.append(
                    {"t": time.time(), "done": len(target.arrivals), "main": main, "total": total}
                )
                stop.wait(0.5)

        sampling = threading.Thread(target=sampler, daemon=True)
        sampling.start()
        started = time.time()
        created = 0
        last_report = 0
        while created < n:
            if created - len(target.arrivals) > args.memory_backlog:
                time.sleep(0.02)
                continue
            batch = min(200, n - created)
            with transaction.atomic():
                for _ in range(batch):
                    services.create_task(team, spec)
            created += batch
            if created - last_report >= n // 10:
                last_report = created
                ctx.say(
                    f"{created:,}/{n:,} created, {len(target.arrivals):,} called, "
                    f"RSS {samples[-1]['total'] / 2**20:.1f} MiB"
                    if samples
                    else ""
                )
        target.wait_count(path, n, timeout=max(120, n / 20))
        time.sleep(1.0)
        stop.set()
        sampling.join()
        elapsed = time.time() - started
    warm = [s for s in samples if 0.10 * n <= s["done"] <= 0.15 * n] or samples[:3]
    tail = [s for s in samples if s["done"] >= 0.95 * n] or samples[-3:]
    base = harness.median(s["total"] for s in warm)
    end = harness.median(s["total"] for s in tail)
    peak = max(s["total"] for s in samples)
    growth = end / base - 1
    return {
        "tasks": n,
        "pool": f"{args.memory_pool}x{args.memory_concurrency}",
        "seconds": round(elapsed, 1),
        "tasks_per_s": round(n / elapsed, 1),
        "rss_idle_mib": round(idle_total / 2**20, 1),
        "rss_after_warmup_mib": round(base / 2**20, 1),
        "rss_end_mib": round(end / 2**20, 1),
        "rss_peak_mib": round(peak / 2**20, 1),
        "ratio": round(end / base, 3),
        "growth_pct": round(growth * 100, 2),
        "goal_holds": growth < 0.10,
        "samples": [{"done": s["done"], "rss_mib": round(s["total"] / 2**20, 2)} for s in samples],
    }


HEADERS = ["backend", "tasks", "pool", "idle MiB", "after warm-up MiB", "end MiB", "peak MiB",
           "ratio", "growth", "goal < 10%"]  # fmt: skip


def _rows(merged: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, r in merged["backends"].items():
        if "error" in r:
            rows.append([name, r["error"], *[""] * 8])
            continue
        rows.append(
            [r["backend"], f"{r['tasks']:,}", r["pool"], r["rss_idle_mib"],
             r["rss_after_warmup_mib"], r["rss_end_mib"], r["rss_peak_mib"],
             f"{r['ratio']:.3f}x", f"{r['growth_pct']:+.1f}%",
             "holds" if r["goal_holds"] else "misses"]
        )  # fmt: skip
    return rows


def report(merged: dict[str, Any]) -> str:
    notes = [
        f"{r['backend']}: {r['tasks']:,} tasks in {r['seconds']}s ({r['tasks_per_s']}/s)"
        for r in merged["backends"].values()
        if "error" not in r
    ]
    return harness.table(HEADERS, _rows(merged)) + "\n" + "\n".join(notes)


def markdown(merged: dict[str, Any]) -> str:
    return harness.markdown_table(HEADERS, _rows(merged))


def chart(merged: dict[str, Any], path: Any) -> None:
    items = [r for r in merged["backends"].values() if "error" not in r]
    with harness.figure(path, len(items), TITLE) as (_fig, axes):
        for ax, r in zip(axes, items, strict=False):
            xs = [s["done"] for s in r["samples"]]
            ys = [s["rss_mib"] for s in r["samples"]]
            ax.plot(xs, ys)
            ax.axvline(r["tasks"] * 0.10, color="grey", linestyle="--", linewidth=0.8)
            ax.set_xlabel("callbacks done")
            ax.set_ylabel("worker RSS incl. children (MiB)")
            ax.set_ylim(0, max(ys or [1]) * 1.15)
            ax.set_title(f"{r['backend']}: {r['growth_pct']:+.1f}% after warm-up", fontsize=10)
            ax.grid(alpha=0.3)
