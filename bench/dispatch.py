"""1. Dispatch latency: ``services.create_task`` (committed) → the callback request arrives at
the target, against the peers a user would run instead (``bench.peers``): a bare Celery task
doing ``requests.post`` (``delay()`` → the POST arrives), the same with a per-thread
``requests.Session``, procrastinate on PostgreSQL (``defer()`` → the POST arrives); and the
floor, bare Celery: ``ping.delay()`` → the task body starts.

All go through the same worker (same pool, concurrency and prefetch) on the same queue and
broker, except procrastinate, which has its own worker with the same concurrency on the same
database. Samples take turns one by one (the order rotates), so all see the same machine at
the same moment; the run is split into rounds and the per-round ratios' median is reported
(app ÷ peer: above 1, the app is slower).

On PostgreSQL, an untimed pass counts the database round trips of one create (the app's
``create_task``, procrastinate's ``defer``) through ``harness.RoundTrips``, a proxy counting
``ReadyForQuery`` messages (BEGIN/COMMIT included).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench import harness, peers

NAME = "dispatch"
TITLE = "Dispatch latency: create (committed) → callback arrives at the target"
FLOOR = (
    "peers: bare Celery task + requests.post, the same with a per-thread Session, "
    "procrastinate (pg); floor: bare Celery delay() of a trivial task → its body starts"
)
GOAL = "p50 ≤ 1.5x and p99 ≤ 2x the Celery + requests.post task; p50 ≤ 1.2x, p99 ≤ 1.5x floor"
GOALS = {"celery_post": {"p50": 1.5, "p99": 2.0}, "ping": {"p50": 1.2, "p99": 1.5}}
KEYS = ("p50", "p95", "p99")
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
    from bench.celery_app import ping, post, post_session

    args = ctx.args
    if ctx.smoke:
        n = 10
    elif ctx.backend.name == "embedded":
        n = args.dispatch_tasks_embedded
    else:
        n = args.dispatch_tasks
    rounds = ctx.rounds(5)
    per_round = max(1, n // rounds)
    wanted = peers.wanted(ctx)
    kinds = ["app", *wanted, "ping"]
    team, _ = harness.bench_team()
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(harness.TargetServer())
        udp = stack.enter_context(harness.UdpCollector())
        worker = stack.enter_context(
            harness.Worker(
                ctx.log_dir, pool=args.dispatch_pool, concurrency=args.dispatch_concurrency
            )
        )
        producer = None
        if "procrastinate" in wanted:
            producer = stack.enter_context(peers.ProcrastinateProducer(ctx.backend.database_url))
            stack.enter_context(
                peers.ProcrastinateWorker(ctx.log_dir, concurrency=args.dispatch_concurrency)
            )
        url = target.url("/dispatch")

        def app_sample() -> tuple[float, float]:
            t0 = time.time()
            created = services.create_task(
                team, services.TaskSpec(target_url=url, payload={"n": 1}, queue=harness.QUEUE)
            )
            returned = time.time()
            return target.wait(str(created.task.pk)) - t0, returned - t0

        def post_sample(kind: str) -> float:
            path = f"/d/{kind}/{uuid.uuid4().hex}"
            t0 = time.time()
            if kind == "celery_post":
                post.delay(target.url(path), {"n": 1})
            elif kind == "celery_session":
                post_session.delay(target.url(path), {"n": 1})
            else:
                assert producer is not None
                producer.defer(target.url(path), {"n": 1})
            return target.wait(path) - t0

        def ping_sample() -> float:
            key = uuid.uuid4().hex
            t0 = time.time()
            ping.delay(udp.port, key)
            return udp.wait(key) - t0

        create: list[float] = []

        def sample(kind: str) -> float:
            if kind == "app":
                latency, call = app_sample()
                create.append(call)
                return latency
            if kind == "ping":
                return ping_sample()
            return post_sample(kind)

        samplers: dict[str, Callable[[], float]] = {k: (lambda k=k: sample(k)) for k in kinds}
        ctx.say(f"worker {worker.pool}x{worker.concurrency}; {', '.join(kinds)}; warm-up")
        for _ in range(2 if ctx.smoke else 30):
            for k in kinds:
                samplers[k]()
        create.clear()
        per: list[dict[str, Any]] = []
        pooled: dict[str, list[float]] = {k: [] for k in kinds}
        all_create: list[float] = []
        for r in range(rounds):
            got: dict[str, list[float]] = {k: [] for k in kinds}
            for i in range(per_round):
                # Rotate who goes first, so none always follows another's leftovers.
                for k in _rotate(kinds, i + r):
                    got[k].append(samplers[k]())
                    time.sleep(args.dispatch_gap)
            ms = {k: harness.percentiles_ms(v) for k, v in got.items()}
            per.append(
                {
                    "ms": ms,
                    "create_call_ms": harness.percentiles_ms(create),
                    "ratio": {
                        k: {q: round(harness.ratio(ms["app"][q], ms[k][q]), 3) for q in KEYS}
                        for k in kinds
                        if k != "app"
                    },
                }
            )
            for k in kinds:
                pooled[k] += got[k]
            all_create += create
            create.clear()
            ap = ms["app"]
            ctx.say(
                f"round {r + 1}/{rounds}: app p50 {ap['p50']:.2f} ms; "
                + ", ".join(
                    f"{peers.SHORT[k]} {ms[k]['p50']:.2f} ms ({per[-1]['ratio'][k]['p50']:.2f}x)"
                    for k in kinds
                    if k != "app"
                )
            )
    ms = {k: {q: harness.median(p["ms"][k][q] for p in per) for q in KEYS} for k in kinds}
    ratios = {
        k: {q: round(harness.median(p["ratio"][k][q] for p in per), 3) for q in KEYS}
        for k in kinds
        if k != "app"
    }
    result: dict[str, Any] = {
        "samples": len(pooled["app"]),
        "rounds": rounds,
        "worker": {"pool": args.dispatch_pool, "concurrency": args.dispatch_concurrency},
        "kinds": kinds,
        "ms": ms,
        "ratios": ratios,
        # The app against the ping floor, as before the peers.
        "floor_ms": ms["ping"],
        "app_ms": ms["app"],
        "ratio": ratios["ping"],
        "create_call_ms": {q: harness.median(p["create_call_ms"][q] for p in per) for q in KEYS},
        "pooled": {k: harness.percentiles_ms(v) for k, v in pooled.items()},
        "per_round": per,
        "cdf": {k: [round(v * 1000, 3) for v in sorted(vs)] for k, vs in pooled.items()},
        "round_trips": _round_trips(ctx, team, wanted) if harness.is_postgres() else None,
    }
    result["goal_holds"] = {
        k: {q: ratios[k][q] <= g for q, g in goal.items()}
        for k, goal in GOALS.items()
        if k in ratios
    }
    return result


def _rotate(items: list[str], k: int) -> list[str]:
    k %= len(items)
    return items[k:] + items[:k]


def _round_trips(ctx: harness.Context, team: Any, wanted: list[str]) -> dict[str, Any]:
    """PostgreSQL round trips of one create: the app's ``services.create_task`` (this
    process's connection through the counting proxy) and procrastinate's ``defer``. Nothing
    consumes these tasks: the queue is purged afterwards, the rows are left pending."""
    from asyncqueue_django import services

    k = 5 if ctx.smoke else 50
    spec = services.TaskSpec(
        target_url="http://127.0.0.1:9/never-called", payload={"n": 1}, queue=harness.QUEUE
    )
    out: dict[str, Any] = {"creates": k, "method": "ReadyForQuery messages via a proxy"}
    with harness.RoundTrips(ctx.backend.database_url) as counter:
        with harness.default_connection_through(counter):
            services.create_task(team, spec)  # connects (not counted below)
            before = counter.snapshot()
            for _ in range(k):
                services.create_task(team, spec)
            after = counter.snapshot()
        out["app"] = _per(before, after, k)
        if "procrastinate" in wanted:
            with peers.ProcrastinateProducer(counter.url()) as producer:
                producer.defer("http://127.0.0.1:9/never-called", {"n": 1})
                before = counter.snapshot()
                for _ in range(k):
                    producer.defer("http://127.0.0.1:9/never-called", {"n": 1})
                after = counter.snapshot()
            out["procrastinate"] = _per(before, after, k)  # emptied by the next ensure_schema
    harness.purge_queue()
    for name in ("celery_post", "celery_session", "ping"):
        out[name] = {"per_create": 0.0, "connections": 0}  # no database at all
    ctx.say(
        "database round trips per create: "
        + ", ".join(f"{peers.SHORT[n]} {out[n]['per_create']:.2f}" for n in out if n in peers.SHORT)
    )
    return out


def _per(before: tuple[int, int], after: tuple[int, int], k: int) -> dict[str, float]:
    return {"per_create": round((after[0] - before[0]) / k, 2), "connections": after[1] - before[1]}


# --------------------------------------------------------------------------------------------
# Tables and charts
# --------------------------------------------------------------------------------------------

HEADERS = ["backend", "what", "p50 ms", "p95 ms", "p99 ms", "app ÷ it p50/p95/p99", "goal",
           "DB round trips/create"]  # fmt: skip


def _legacy(r: dict[str, Any]) -> dict[str, Any]:
    """Results written before the peers (app and ping floor only)."""
    if "ms" in r:
        return r
    return {
        **r,
        "kinds": ["app", "ping"],
        "ms": {"app": r["app_ms"], "ping": r["floor_ms"]},
        "ratios": {"ping": r["ratio"]},
        "goal_holds": {"ping": r.get("goal_holds", {})},
        "cdf": {"app": r["cdf"]["app_ms"], "ping": r["cdf"]["floor_ms"]},
    }


def _rows(merged: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for name, raw in merged["backends"].items():
        if "error" in raw:
            rows.append([name, raw["error"], "", "", "", "", "", ""])
            continue
        r = _legacy(raw)
        trips = r.get("round_trips") or {}
        for kind in r["kinds"]:
            ms = r["ms"][kind]
            ratio = r["ratios"].get(kind)
            goal = GOALS.get(kind, {})
            holds = r.get("goal_holds", {}).get(kind, {})
            verdict = ", ".join(
                f"{q} ≤ {g}x {'holds' if holds.get(q) else 'misses'}" for q, g in goal.items()
            )
            rt = trips.get(kind)
            rows.append(
                [r["backend"], peers.LABELS[kind], ms["p50"], ms["p95"], ms["p99"],
                 "-" if ratio is None else "/".join(f"{ratio[q]:.2f}" for q in KEYS) + "x",
                 verdict, "-" if rt is None else f"{rt['per_create']:.2f}"]
            )  # fmt: skip
    return rows


def report(merged: dict[str, Any]) -> str:
    out = harness.table(HEADERS, _rows(merged))
    notes = []
    for raw in merged["backends"].values():
        if "error" in raw:
            continue
        r = _legacy(raw)
        notes.append(
            f"{r['backend']}: {r['samples']} samples each, {r['rounds']} rounds (median of "
            f"rounds); create_task call itself p50 {r['create_call_ms']['p50']:.2f} ms; "
            f"worker {r['worker']['pool']}x{r['worker']['concurrency']}; "
            "app ÷ it > 1: the app is slower"
        )
        trips = r.get("round_trips")
        if trips:
            notes.append(
                f"{r['backend']}: DB round trips per create counted over {trips['creates']} "
                f"creates ({trips['method']})"
            )
    return out + "\n" + "\n".join(notes)


def markdown(merged: dict[str, Any]) -> str:
    notes = report(merged).split("\n")[len(_rows(merged)) + 2 :]
    return harness.markdown_table(HEADERS, _rows(merged)) + "".join(f"\n\n{n}" for n in notes)


def chart(merged: dict[str, Any], path: Any) -> None:
    items = [_legacy(r) for r in merged["backends"].values() if "error" not in r]
    with harness.figure(path, len(items), TITLE, width=6.5) as (_fig, axes):
        for ax, r in zip(axes, items, strict=False):
            for kind in r["kinds"]:
                data = r["cdf"][kind]
                if not data:
                    continue
                ys = [(i + 1) / len(data) for i in range(len(data))]
                label = peers.SHORT[kind]
                if kind in r["ratios"]:
                    ratio = "/".join(f"{r['ratios'][kind][q]:.2f}" for q in KEYS)
                    label += f": app ÷ it {ratio}x"
                ax.plot(data, ys, label=label, linewidth=2.2 if kind == "app" else 1.2)
            harness.log_x(ax, "create → target hit (ms, log scale)")
            ax.set_ylabel("fraction of samples")
            ax.set_title(f"{r['backend']} (ratios: p50/p95/p99)", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
