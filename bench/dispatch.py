"""1. Dispatch latency: ``services.create_task`` (committed) → the callback request arrives at
the target, against bare Celery: ``ping.delay()`` → the task body starts.

Both go through the same worker (same pool, concurrency and prefetch) on the same queue and
broker. Samples alternate floor/app one by one, so both see the same machine at the same
moment; the run is split into rounds and the per-round ratios' median is reported.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench import harness

NAME = "dispatch"
TITLE = "Dispatch latency: create (committed) → callback arrives at the target"
FLOOR = "bare Celery delay() of a trivial task → its body starts (same broker, same worker)"
GOAL = "p50 ≤ 1.2x floor, p99 ≤ 1.5x floor"
BACKENDS = ("pg", "embedded")


def add_arguments(group: Any) -> None:
    group.add_argument("--dispatch-tasks", type=int, default=1000, help="app samples (≥1000)")
    group.add_argument(
        "--dispatch-tasks-embedded",
        type=int,
        default=300,
        help="app samples on the embedded broker (it polls every 0.1 s: slow to sample)",
    )
    group.add_argument("--dispatch-pool", default="threads", help="worker pool")
    group.add_argument("--dispatch-concurrency", type=int, default=8)
    group.add_argument(
        "--dispatch-gap", type=float, default=0.005, help="pause (s) between samples"
    )


def run(ctx: harness.Context) -> dict[str, Any]:
    from asyncqueue_django import services
    from bench.celery_app import ping

    args = ctx.args
    if ctx.smoke:
        n = 10
    elif ctx.backend.name == "embedded":
        n = args.dispatch_tasks_embedded
    else:
        n = args.dispatch_tasks
    rounds = ctx.rounds(5)
    per_round = max(1, n // rounds)
    team, _ = harness.bench_team()
    with (
        harness.TargetServer() as target,
        harness.UdpCollector() as udp,
        harness.Worker(
            ctx.log_dir, pool=args.dispatch_pool, concurrency=args.dispatch_concurrency
        ) as worker,
    ):
        url = target.url("/dispatch")

        def floor_sample() -> float:
            key = uuid.uuid4().hex
            t0 = time.time()
            ping.delay(udp.port, key)
            return udp.wait(key) - t0

        def app_sample() -> tuple[float, float]:
            t0 = time.time()
            created = services.create_task(
                team, services.TaskSpec(target_url=url, payload={"n": 1}, queue=harness.QUEUE)
            )
            returned = time.time()
            return target.wait(str(created.task.pk)) - t0, returned - t0

        ctx.say(f"worker {worker.pool}x{worker.concurrency}; warm-up")
        for _ in range(2 if ctx.smoke else 30):
            floor_sample()
            app_sample()
        per: list[dict[str, Any]] = []
        all_floor: list[float] = []
        all_app: list[float] = []
        all_create: list[float] = []
        for r in range(rounds):
            floor: list[float] = []
            app: list[float] = []
            create: list[float] = []
            for i in range(per_round):
                # Alternate which goes first, so neither always follows the other's leftovers.
                if (i + r) % 2:
                    floor.append(floor_sample())
                    time.sleep(args.dispatch_gap)
                    a, c = app_sample()
                else:
                    a, c = app_sample()
                    time.sleep(args.dispatch_gap)
                    floor.append(floor_sample())
                app.append(a)
                create.append(c)
                time.sleep(args.dispatch_gap)
            fl, ap = harness.percentiles_ms(floor), harness.percentiles_ms(app)
            per.append(
                {
                    "floor_ms": fl,
                    "app_ms": ap,
                    "create_call_ms": harness.percentiles_ms(create),
                    "ratio": {k: round(harness.ratio(ap[k], fl[k]), 3) for k in fl},
                }
            )
            all_floor += floor
            all_app += app
            all_create += create
            ctx.say(
                f"round {r + 1}/{rounds}: p50 {ap['p50']:.2f} ms vs floor {fl['p50']:.2f} ms "
                f"({ap['p50'] / fl['p50']:.2f}x), p99 {ap['p99']:.2f} vs {fl['p99']:.2f}"
            )
    keys = ("p50", "p95", "p99")
    result = {
        "samples": len(all_app),
        "rounds": rounds,
        "worker": {"pool": args.dispatch_pool, "concurrency": args.dispatch_concurrency},
        "floor_ms": {k: harness.median(p["floor_ms"][k] for p in per) for k in keys},
        "app_ms": {k: harness.median(p["app_ms"][k] for p in per) for k in keys},
        "ratio": {k: round(harness.median(p["ratio"][k] for p in per), 3) for k in keys},
        "create_call_ms": {k: harness.median(p["create_call_ms"][k] for p in per) for k in keys},
        "pooled": {
            "floor_ms": harness.percentiles_ms(all_floor),
            "app_ms": harness.percentiles_ms(all_app),
        },
        "per_round": per,
        "cdf": {
            "floor_ms": [round(v * 1000, 3) for v in sorted(all_floor)],
            "app_ms": [round(v * 1000, 3) for v in sorted(all_app)],
        },
    }
    result["goal_holds"] = {
        "p50": result["ratio"]["p50"] <= 1.2,
        "p99": result["ratio"]["p99"] <= 1.5,
    }
    return result


def _rows(merged: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, r in merged["backends"].items():
        if "error" in r:
            rows.append([name, r["error"], "", "", "", ""])
            continue
        for k in ("p50", "p95", "p99"):
            goal = {"p50": 1.2, "p99": 1.5}.get(k)
            verdict = "" if goal is None else ("holds" if r["ratio"][k] <= goal else "misses")
            rows.append(
                [r["backend"], k, r["floor_ms"][k], r["app_ms"][k], f"{r['ratio'][k]:.2f}x",
                 f"≤ {goal}x {verdict}" if goal else ""]
            )  # fmt: skip
    return rows


HEADERS = ["backend", "pct", "floor ms", "app ms", "ratio", "goal"]


def report(merged: dict[str, Any]) -> str:
    out = harness.table(HEADERS, _rows(merged))
    notes = []
    for r in merged["backends"].values():
        if "error" not in r:
            notes.append(
                f"{r['backend']}: {r['samples']} samples, {r['rounds']} rounds (median of "
                f"rounds); create_task call itself p50 {r['create_call_ms']['p50']:.2f} ms; "
                f"worker {r['worker']['pool']}x{r['worker']['concurrency']}"
            )
    return out + "\n" + "\n".join(notes)


def markdown(merged: dict[str, Any]) -> str:
    return harness.markdown_table(HEADERS, _rows(merged))


def chart(merged: dict[str, Any], path: Any) -> None:
    items = [(n, r) for n, r in merged["backends"].items() if "error" not in r]
    with harness.figure(path, len(items), TITLE) as (_fig, axes):
        for ax, (_name, r) in zip(axes, items, strict=False):
            floor, app = r["cdf"]["floor_ms"], r["cdf"]["app_ms"]
            for label, data in (("floor: bare Celery", floor), ("app: create → callback", app)):
                ys = [(i + 1) / len(data) for i in range(len(data))]
                ax.plot(data, ys, label=label)
            harness.log_x(ax, "latency (ms, log scale)")
            ax.set_ylabel("fraction of samples")
            ax.set_title(
                f"{r['backend']}: p50 {r['ratio']['p50']:.2f}x, p99 {r['ratio']['p99']:.2f}x",
                fontsize=10,
            )
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
