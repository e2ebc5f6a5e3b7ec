"""3. Callback throughput through one worker, per pool (prefork, threads, gevent), against a
raw ``requests.Session`` loop POSTing the same body to the same target from its own process.

Each round creates a burst of tasks in one transaction (published on commit), and the rate is
read from the target's arrival times between the 10th and the 90th percentile of the burst
(steady state, without start-up and tail). The floor loop is timed the same way, in the same
round.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from bench import harness

NAME = "callbacks"
TITLE = "Callback throughput: callbacks/s through one worker"
FLOOR = "raw requests.Session loop (one process, one thread) against the same local target"
GOAL = "≥ 0.5x floor"
BACKENDS = ("pg", "embedded")
DEFAULT_CONCURRENCY = {"prefork": 2, "threads": 8, "gevent": 8}


def add_arguments(group: Any) -> None:
    group.add_argument("--callbacks-tasks", type=int, default=2000, help="tasks per round")
    group.add_argument(
        "--callbacks-pools",
        help="comma list of prefork, threads, gevent (default: prefork,threads on pg; "
        "threads on embedded; gevent leaks database connections, see the module)",
    )
    group.add_argument(
        "--callbacks-concurrency",
        help="pool=N list, default " + ",".join(f"{k}={v}" for k, v in DEFAULT_CONCURRENCY.items()),
    )


def steady_rate(times: list[float]) -> float:
    """Requests/s between the 10th and 90th percentile arrival."""
    times = sorted(times)
    if len(times) < 10:
        span = times[-1] - times[0]
        return (len(times) - 1) / span if span > 0 else float("nan")
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9)
    return (hi - lo) / (times[hi] - times[lo])


def _floor(target: harness.TargetServer, tag: str, n: int) -> float:
    subprocess.run(
        [sys.executable, "-m", "bench.floor_client", target.url(f"/floor/{tag}/"), str(n)],
        check=True,
        cwd=harness.ROOT,
        timeout=600,
    )
    arrivals = target.wait_count(f"/floor/{tag}/", n, timeout=60)
    return steady_rate([a.at for a in arrivals])


def _pools(ctx: harness.Context) -> list[tuple[str, int]]:
    args = ctx.args
    if args.callbacks_pools:
        names = args.callbacks_pools.split(",")
    elif ctx.backend.name == "pg":
        # Not gevent by default: every task runs in a new greenlet, Django keeps one database
        # connection per greenlet, and with CELERY_DB_REUSE_MAX they are not closed after the
        # task: PostgreSQL runs out of connections ("too many clients") within seconds.
        names = ["prefork", "threads"]
    else:
        names = ["threads"]
    conc = dict(DEFAULT_CONCURRENCY)
    for item in (args.callbacks_concurrency or "").split(","):
        if "=" in item:
            k, v = item.split("=", 1)
            conc[k] = int(v)
    if ctx.smoke and not args.callbacks_pools:
        names = ["threads"]  # one worker start keeps the smoke run short
    out = []
    for name in names:
        if name == "gevent":
            try:
                import gevent  # noqa: F401
            except ImportError:
                ctx.say("gevent is not installed: skipping the gevent pool")
                continue
        out.append((name, conc[name]))
    return out


def run(ctx: harness.Context) -> dict[str, Any]:
    from django.db import transaction

    from asyncqueue_django import services
    from asyncqueue_django.models import Task

    n = 40 if ctx.smoke else ctx.args.callbacks_tasks
    rounds = ctx.rounds(3)
    team, _ = harness.bench_team()
    pools: dict[str, Any] = {}
    with harness.TargetServer() as target:
        for pool, concurrency in _pools(ctx):
            per: list[dict[str, Any]] = []
            with harness.Worker(ctx.log_dir, pool=pool, concurrency=concurrency):
                for r in range(rounds + 1):  # round 0 warms up (connections, imports)
                    tag = f"{pool}-{r}"
                    path = f"/cb/{tag}"
                    spec = services.TaskSpec(
                        target_url=target.url(path), payload={"orderId": 1}, queue=harness.QUEUE
                    )
                    count = max(10, n // 5) if r == 0 else n
                    with transaction.atomic():  # one burst, published on commit
                        ids = [str(services.create_task(team, spec).task.pk) for _ in range(count)]
                    arrivals = target.wait_count(path, count, timeout=max(120, count / 5))
                    app = steady_rate([a.at for a in arrivals])
                    deadline = time.monotonic() + 60
                    while Task.objects.filter(pk__in=ids, status="completed").count() < count:
                        if time.monotonic() > deadline:
                            raise TimeoutError("callbacks did not all complete")
                        time.sleep(0.05)
                    floor = _floor(target, tag, count)
                    if r == 0:
                        continue
                    per.append({"app": round(app, 1), "floor": round(floor, 1),
                                "ratio": round(app / floor, 3)})  # fmt: skip
                    ctx.say(
                        f"{pool}x{concurrency} round {r}/{rounds}: {app:.0f}/s vs floor "
                        f"{floor:.0f}/s ({app / floor:.2f}x)"
                    )
            pools[pool] = {
                "concurrency": concurrency,
                "app_per_s": harness.median(p["app"] for p in per),
                "floor_per_s": harness.median(p["floor"] for p in per),
                "ratio": round(harness.median(p["ratio"] for p in per), 3),
                "per_round": per,
            }
            pools[pool]["goal_holds"] = pools[pool]["ratio"] >= 0.5
    best = max(pools, key=lambda p: pools[p]["ratio"]) if pools else None
    return {"tasks_per_round": n, "rounds": rounds, "pools": pools, "best_pool": best}


HEADERS = ["backend", "pool", "floor/s", "app/s", "ratio", "goal ≥ 0.5x"]


def _rows(merged: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, r in merged["backends"].items():
        if "error" in r:
            rows.append([name, r["error"], "", "", "", ""])
            continue
        for pool, p in r["pools"].items():
            rows.append(
                [r["backend"], f"{pool}x{p['concurrency']}", p["floor_per_s"], p["app_per_s"],
                 f"{p['ratio']:.2f}x", "holds" if p["goal_holds"] else "misses"]
            )  # fmt: skip
    return rows


def report(merged: dict[str, Any]) -> str:
    notes = [
        f"{r['backend']}: {r['tasks_per_round']} tasks/round, {r['rounds']} rounds (median); "
        f"best pool: {r['best_pool']}"
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
            pools = list(r["pools"])
            harness.grouped_bars(
                ax,
                [f"{p}x{r['pools'][p]['concurrency']}" for p in pools],
                {
                    "floor: raw requests loop": [r["pools"][p]["floor_per_s"] for p in pools],
                    "app: one worker": [r["pools"][p]["app_per_s"] for p in pools],
                },
                ylabel="callbacks/s (median of rounds)",
                title=r["backend"],
                annotate=[f"{r['pools'][p]['ratio']:.2f}x" for p in pools],
            )
