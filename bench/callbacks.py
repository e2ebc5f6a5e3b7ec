"""3. Callback throughput through one worker, per pool, against the peers a user would run
instead (``bench.peers``: a bare Celery task doing ``requests.post``, the same with a
per-thread ``requests.Session``, procrastinate on PostgreSQL) and two floors (a Celery no-op
task: the per-message cost; a raw ``requests.Session`` loop POSTing the same body to the same
target from its own process: the HTTP limit).

Each round sends a burst of ``--callbacks-tasks`` to each of them in turn (the order rotates
from round to round), through the same Celery worker (the app, the Celery peers, the no-op) or
a procrastinate worker with the same concurrency, against the same target. A burst is counted
from the moment it is visible to the worker (the app: its one transaction commits and
publishing starts; Celery: the first ``delay()``; procrastinate: its one-statement
``batch_defer`` has returned) until the last callback arrived **and** the queue is drained
(broker queue empty; the app's rows all completed; procrastinate's jobs all finished).
Ratios are app ÷ peer per round, then the median over rounds.

On PostgreSQL, a counting pass (not timed) runs a second worker whose database connection goes
through ``harness.RoundTrips``, a proxy counting ``ReadyForQuery`` messages: the round trips
per callback of the app and of procrastinate, BEGIN/COMMIT and connection checks included.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import harness, peers

NAME = "callbacks"
TITLE = "Callback throughput: callbacks/s through one worker, until drained"
FLOOR = (
    "peers: bare Celery task + requests.post, the same with a per-thread Session, "
    "procrastinate (pg); floors: Celery no-op task, raw requests.Session loop"
)
GOAL = (
    "≥ 2.0x Celery+post, ≥ 1.5x Celery+Session, ≥ 3x procrastinate (threads x8, pg); "
    "≥ 0.5x the raw Session loop"
)
BACKENDS = ("pg", "embedded")
DEFAULT_CONCURRENCY = {"prefork": 2, "threads": 8, "gevent": 8}
GOALS = {"celery_post": 2.0, "celery_session": 1.5, "procrastinate": 3.0, "raw_session": 0.5}
PAYLOAD = {"orderId": 1}


def add_arguments(group: Any) -> None:
    group.add_argument("--callbacks-tasks", type=int, default=2000, help="tasks per round")
    group.add_argument(
        "--callbacks-pools",
        help="comma list of prefork, threads, gevent (default: threads; gevent leaks "
        "database connections, see the module)",
    )
    group.add_argument(
        "--callbacks-concurrency",
        help="pool=N list, default " + ",".join(f"{k}={v}" for k, v in DEFAULT_CONCURRENCY.items()),
    )


def _raw_session(target: harness.TargetServer, tag: str, n: int) -> float:
    """The HTTP floor: first to last request of one Session loop (its start-up excluded)."""
    subprocess.run(
        [sys.executable, "-m", "bench.floor_client", target.url(f"/floor/{tag}/"), str(n)],
        check=True,
        cwd=harness.ROOT,
        timeout=600,
    )
    times = [a.at for a in target.wait_count(f"/floor/{tag}/", n, timeout=60)]
    span = max(times) - min(times)
    return (n - 1) / span if span > 0 else float("nan")


def _pools(ctx: harness.Context) -> list[tuple[str, int]]:
    args = ctx.args
    # By default one worker, threads x8. prefork is a knob away; gevent is not advised: every
    # task runs in a new greenlet, Django keeps one database connection per greenlet, and with
    # CELERY_DB_REUSE_MAX they are not closed after the task: PostgreSQL runs out of
    # connections ("too many clients") within seconds.
    names = args.callbacks_pools.split(",") if args.callbacks_pools else ["threads"]
    conc = dict(DEFAULT_CONCURRENCY)
    for item in (args.callbacks_concurrency or "").split(","):
        if "=" in item:
            k, v = item.split("=", 1)
            conc[k] = int(v)
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


class Bursts:
    """One burst of ``count`` callbacks per kind, each timed until drained (see the module)."""

    def __init__(
        self,
        ctx: harness.Context,
        target: harness.TargetServer,
        udp: harness.UdpCollector,
        producer: peers.ProcrastinateProducer | None,
    ) -> None:
        self.ctx, self.target, self.udp, self.producer = ctx, target, udp, producer
        self.team, _ = harness.bench_team()

    def run(self, kind: str, count: int, tag: str) -> float:
        path = f"/cb/{kind}/{tag}"
        url = self.target.url(path)
        timeout = max(120, count / 5)
        drained: Callable[[], bool]
        if kind == "app":
            t0, drained = self._app(url, count)
        elif kind in ("celery_post", "celery_session"):
            from bench.celery_app import post, post_session

            task = post if kind == "celery_post" else post_session
            t0 = time.time()
            for _ in range(count):
                task.apply_async((url, PAYLOAD), queue=harness.QUEUE)
            drained = _true
        elif kind == "procrastinate":
            assert self.producer is not None
            self.producer.batch(url, PAYLOAD, count)
            t0 = time.time()
            drained = self._procrastinate_drained
        elif kind == "celery_noop":
            from bench.celery_app import ping

            key = f"noop-{tag}"
            t0 = time.time()
            for _ in range(count):
                ping.apply_async((self.udp.port, key), queue=harness.QUEUE)
            end = max(self.udp.wait_many(key, count, timeout))
            return count / (self._drained(end, _true) - t0)
        else:
            raise ValueError(kind)
        end = max(self.target.wait_path(path, count, timeout))
        return count / (self._drained(end, drained) - t0)

    def _app(self, url: str, count: int) -> tuple[float, Callable[[], bool]]:
        from django.db import transaction

        from asyncqueue_django import services
        from asyncqueue_django.models import Task

        spec = services.TaskSpec(target_url=url, payload=PAYLOAD, queue=harness.QUEUE)
        marks: dict[str, float] = {}
        with transaction.atomic():  # one burst; the tasks are published on commit
            # The first on-commit callback: the commit is done, publishing starts.
            transaction.on_commit(lambda: marks.setdefault("t0", time.time()))
            for _ in range(count):
                services.create_task(self.team, spec)

        def completed() -> bool:
            return not Task.objects.filter(target_url=url).exclude(status="completed").exists()

        return marks["t0"], completed

    def _procrastinate_drained(self) -> bool:
        assert self.producer is not None
        return self.producer.pending() == 0

    @staticmethod
    def _drained(last_arrival: float, done: Callable[[], bool], timeout: float = 60) -> float:
        """When the queue was seen drained (and ``done``): the last arrival if it already was."""
        deadline = time.monotonic() + timeout
        end = last_arrival
        while not (harness.queue_size() == 0 and done()):
            if time.monotonic() > deadline:
                raise TimeoutError("the queue was not drained")
            time.sleep(0.01)
            end = time.time()
        return max(end, last_arrival)


def _true() -> bool:
    return True


def _rotate(items: list[str], k: int) -> list[str]:
    k %= len(items)
    return items[k:] + items[:k]


def run(ctx: harness.Context) -> dict[str, Any]:
    n = 40 if ctx.smoke else ctx.args.callbacks_tasks
    rounds = ctx.rounds(5)
    wanted = peers.wanted(ctx)
    kinds = ["app", *wanted, "celery_noop"]
    pools: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(harness.TargetServer())
        udp = stack.enter_context(harness.UdpCollector())
        producer = None
        if "procrastinate" in wanted:
            producer = stack.enter_context(peers.ProcrastinateProducer(ctx.backend.database_url))
        bursts = Bursts(ctx, target, udp, producer)
        for pool, concurrency in _pools(ctx):
            per: list[dict[str, Any]] = []
            with contextlib.ExitStack() as workers:
                workers.enter_context(
                    harness.Worker(ctx.log_dir, pool=pool, concurrency=concurrency)
                )
                if producer is not None:
                    workers.enter_context(
                        peers.ProcrastinateWorker(ctx.log_dir, concurrency=concurrency)
                    )
                for r in range(rounds + 1):  # round 0 warms up (connections, imports)
                    tag = f"{pool}-{r}"
                    count = max(10, n // 5) if r == 0 else n
                    rates = {k: bursts.run(k, count, tag) for k in _rotate(kinds, r)}
                    rates["raw_session"] = _raw_session(target, tag, count)
                    if r == 0:
                        continue
                    app = rates["app"]
                    row = {
                        "per_s": {k: round(v, 1) for k, v in rates.items()},
                        "ratio": {
                            k: round(harness.ratio(app, v), 3)
                            for k, v in rates.items()
                            if k != "app"
                        },
                    }
                    per.append(row)
                    ctx.say(
                        f"{pool}x{concurrency} round {r}/{rounds}: app {app:.0f}/s; "
                        + ", ".join(
                            f"{peers.SHORT[k]} {rates[k]:.0f}/s ({row['ratio'][k]:.2f}x)"
                            for k in row["ratio"]
                        )
                    )
            order = ["app", *wanted, "celery_noop", "raw_session"]
            measured = [k for k in order if per and k in per[0]["per_s"]]
            entry: dict[str, Any] = {
                "concurrency": concurrency,
                "per_s": {k: harness.median(p["per_s"][k] for p in per) for k in measured},
                "ratio": {
                    k: round(harness.median(p["ratio"][k] for p in per), 3)
                    for k in measured
                    if k != "app"
                },
                "per_round": per,
            }
            entry["goal_holds"] = {
                k: entry["ratio"][k] >= g for k, g in GOALS.items() if k in entry["ratio"]
            }
            pools[pool] = entry
    result: dict[str, Any] = {
        "tasks_per_round": n,
        "rounds": rounds,
        "kinds": ["app", *wanted, "celery_noop", "raw_session"],
        "pools": pools,
        "round_trips": _round_trips(ctx, wanted) if harness.is_postgres() else None,
    }
    return result


def _round_trips(ctx: harness.Context, wanted: list[str]) -> dict[str, Any]:
    """PostgreSQL round trips per callback (app, procrastinate), in an untimed pass with a
    threads worker whose connection goes through the counting proxy."""
    k = 24 if ctx.smoke else 200
    concurrency = DEFAULT_CONCURRENCY["threads"]
    out: dict[str, Any] = {"callbacks": k, "method": "ReadyForQuery messages via a proxy"}
    with (
        harness.RoundTrips(ctx.backend.database_url) as counter,
        harness.TargetServer() as target,
        harness.UdpCollector() as udp,
        contextlib.ExitStack() as stack,
    ):
        env = {"DATABASE_URL": counter.url()}
        producer = None
        if "procrastinate" in wanted:
            producer = stack.enter_context(peers.ProcrastinateProducer(ctx.backend.database_url))
        bursts = Bursts(ctx, target, udp, producer)
        with harness.Worker(
            ctx.log_dir, pool="threads", concurrency=concurrency, name="count", env=env
        ):
            bursts.run("app", concurrency * 4, "count-warm")  # every thread connects
            before = counter.snapshot()
            bursts.run("app", k, "count")
            after = counter.snapshot()
        out["app"] = _per(before, after, k)
        if producer is not None:
            with peers.ProcrastinateWorker(ctx.log_dir, concurrency=concurrency, env=env):
                bursts.run("procrastinate", concurrency * 4, "count-warm")
                before = counter.snapshot()
                bursts.run("procrastinate", k, "count")
                after = counter.snapshot()
            out["procrastinate"] = _per(before, after, k)
    for name in ("celery_post", "celery_session", "celery_noop", "raw_session"):
        out[name] = {"per_callback": 0.0, "connections": 0}  # no database at all
    ctx.say(
        "database round trips per callback: "
        + ", ".join(
            f"{peers.SHORT[n]} {out[n]['per_callback']:.2f}" for n in out if n in peers.SHORT
        )
    )
    return out


def _per(before: tuple[int, int], after: tuple[int, int], k: int) -> dict[str, float]:
    return {
        "per_callback": round((after[0] - before[0]) / k, 2),
        "connections": after[1] - before[1],
    }


# --------------------------------------------------------------------------------------------
# Tables and charts
# --------------------------------------------------------------------------------------------

HEADERS = ["backend", "pool", "what", "callbacks/s", "app ÷ it", "goal", "DB round trips"]


def _legacy(p: dict[str, Any]) -> dict[str, Any]:
    """Results written before the peers (app and raw loop only)."""
    if "per_s" in p:
        return p
    return {
        **p,
        "per_s": {"app": p["app_per_s"], "raw_session": p["floor_per_s"]},
        "ratio": {"raw_session": p["ratio"]},
        "goal_holds": {"raw_session": p.get("goal_holds")},
    }


def _order(r: dict[str, Any], p: dict[str, Any]) -> list[str]:
    """The app, the peers, the floors (the bursts themselves ran in a rotating order)."""
    known = r.get("kinds") or ["app", *peers.PEERS, "celery_noop", "raw_session"]
    return [k for k in known if k in p["per_s"]]


def _rows(merged: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for name, r in merged["backends"].items():
        if "error" in r:
            rows.append([name, r["error"], "", "", "", "", ""])
            continue
        trips = r.get("round_trips") or {}
        for pool, raw in r["pools"].items():
            p = _legacy(raw)
            for kind in _order(r, p):
                rate = p["per_s"][kind]
                ratio = p["ratio"].get(kind)
                goal = GOALS.get(kind)
                holds = p.get("goal_holds", {}).get(kind)
                verdict = "" if goal is None or holds is None else ("holds" if holds else "misses")
                rt = trips.get(kind)
                rows.append(
                    [r["backend"], f"{pool}x{p['concurrency']}", peers.LABELS[kind], rate,
                     "-" if ratio is None else f"{ratio:.2f}x",
                     f"≥ {goal}x {verdict}" if goal else "",
                     "-" if rt is None else f"{rt['per_callback']:.2f}"]
                )  # fmt: skip
    return rows


def report(merged: dict[str, Any]) -> str:
    notes = []
    for r in merged["backends"].values():
        if "error" in r:
            continue
        counted = (
            "callbacks/s counted until the queue is drained"
            if "kinds" in r
            else "callbacks/s between the 10th and 90th percentile arrival (before the peers)"
        )
        notes.append(
            f"{r['backend']}: {r['tasks_per_round']} tasks/burst, {r['rounds']} rounds (median); "
            f"{counted}; app ÷ it > 1: the app is faster"
        )
        if "kinds" in r and not r.get("round_trips"):
            notes.append(f"{r['backend']}: DB round trips are counted on PostgreSQL only")
        trips = r.get("round_trips")
        if trips:
            notes.append(
                f"{r['backend']}: DB round trips per callback counted over {trips['callbacks']} "
                f"callbacks ({trips['method']}); new connections in that window: app "
                f"{trips['app']['connections']}"
                + (
                    f", procrastinate {trips['procrastinate']['connections']}"
                    if "procrastinate" in trips
                    else ""
                )
            )
    return harness.table(HEADERS, _rows(merged)) + "\n" + "\n".join(notes)


def markdown(merged: dict[str, Any]) -> str:
    notes = report(merged).split("\n")[len(_rows(merged)) + 2 :]
    return harness.markdown_table(HEADERS, _rows(merged)) + "".join(f"\n\n{n}" for n in notes)


def chart(merged: dict[str, Any], path: Any) -> None:
    items = [
        (r, pool, _legacy(p))
        for r in merged["backends"].values()
        if "error" not in r
        for pool, p in r["pools"].items()
    ]
    with harness.figure(path, len(items), TITLE, width=6.5) as (_fig, axes):
        for ax, (r, pool, p) in zip(axes, items, strict=False):
            kinds = _order(r, p)
            values = [p["per_s"][k] for k in kinds]
            ys = list(range(len(kinds)))[::-1]
            colors = ["tab:red" if k == "app" else "tab:blue" for k in kinds]
            ax.barh(ys, [v if v == v else 0 for v in values], color=colors)
            ax.set_yticks(ys)
            ax.set_yticklabels([peers.SHORT[k] for k in kinds], fontsize=8)
            top = max([v for v in values if v == v] or [1])
            for y, k, v in zip(ys, kinds, values, strict=True):
                label = f"{v:.0f}/s" + (
                    f"  app ÷ it {p['ratio'][k]:.2f}x" if k in p["ratio"] else ""
                )
                ax.annotate(label, (v if v == v else 0, y), xytext=(3, 0),
                            textcoords="offset points", va="center", fontsize=7)  # fmt: skip
            ax.set_xlim(0, top * 1.6)
            ax.set_xlabel("callbacks/s until drained (median of rounds)")
            ax.set_title(f"{r['backend']}, {pool}x{p['concurrency']}", fontsize=10)
