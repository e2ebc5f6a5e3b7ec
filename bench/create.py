"""2. Create throughput: ``POST /v1/tasks`` under concurrent clients on gunicorn, against a
bare DRF view inserting one row with the same column shapes (``bench.floor``) on the same
server and database.

Rounds alternate floor and app (each for ``--create-seconds``); the ratio of requests/s per
round is reported as the median over rounds. Tasks are published to the benchmark queue, which
no worker consumes here (it is purged afterwards): the publish is part of what is measured.

On PostgreSQL, an untimed pass counts the database round trips per request of each (one
gunicorn worker whose connection goes through ``harness.RoundTrips``, a proxy counting
``ReadyForQuery`` messages: BEGIN/COMMIT included).
"""

from __future__ import annotations

import json
from typing import Any

from bench import harness

NAME = "create"
TITLE = "Create throughput: POST /v1/tasks on gunicorn"
FLOOR = "bare DRF view inserting one comparable row (bench.floor), same server and database"
GOAL = "≥ 0.7x floor"
BACKENDS = ("pg", "embedded")


def add_arguments(group: Any) -> None:
    group.add_argument("--create-seconds", type=float, default=6.0, help="per run")
    group.add_argument("--create-clients", type=int, default=8, help="concurrent clients")
    group.add_argument("--create-workers", type=int, default=4, help="gunicorn workers")
    group.add_argument(
        "--create-threads", type=int, default=1, help="gunicorn threads (>1: gthread)"
    )


def run(ctx: harness.Context) -> dict[str, Any]:
    args = ctx.args
    seconds = 0.5 if ctx.smoke else args.create_seconds
    rounds = ctx.rounds(3)
    clients = 2 if ctx.smoke else args.create_clients
    _, key = harness.bench_team()
    headers = {"Authorization": f"Bearer {key}"}
    # Never called: no worker consumes the queue in this benchmark.
    target = "http://127.0.0.1:9/never-called"

    def body(i: int) -> bytes:
        return json.dumps(
            {
                "targetUrl": target,
                "payload": {"orderId": i, "amount": 99.99},
                "queue": harness.QUEUE,
            }
        ).encode()

    per: list[dict[str, Any]] = []
    with harness.ApiServer(
        ctx.log_dir, workers=args.create_workers, threads=args.create_threads
    ) as api:
        runs = {"floor": api.url("/bench/floor"), "app": api.url("/v1/tasks")}
        ctx.say(f"gunicorn {args.create_workers}x{args.create_threads}, {clients} clients; warm-up")
        for url in runs.values():
            harness.load(url, body, headers, clients=clients, seconds=min(1.0, seconds))
        for r in range(rounds):
            order = ["floor", "app"] if r % 2 == 0 else ["app", "floor"]
            got: dict[str, harness.LoadResult] = {}
            for which in order:
                got[which] = harness.load(
                    runs[which], body, headers, clients=clients, seconds=seconds
                )
                if got[which].errors:
                    ctx.say(f"{which}: {got[which].errors} errors, statuses {got[which].statuses}")
            harness.purge_queue()
            row = {
                w: {
                    "rps": round(got[w].rps, 1),
                    "requests": got[w].ok,
                    "errors": got[w].errors,
                    "latency_ms": harness.percentiles_ms(got[w].latencies),
                }
                for w in ("floor", "app")
            }
            row["ratio"] = round(harness.ratio(got["app"].rps, got["floor"].rps), 3)
            per.append(row)
            ctx.say(
                f"round {r + 1}/{rounds}: app {row['app']['rps']:.0f}/s vs floor "
                f"{row['floor']['rps']:.0f}/s ({row['ratio']:.2f}x)"
            )
    round_trips = _round_trips(ctx, body, headers) if harness.is_postgres() else None
    result: dict[str, Any] = {
        "server": {"gunicorn_workers": args.create_workers, "threads": args.create_threads},
        "clients": clients,
        "seconds_per_run": seconds,
        "rounds": rounds,
        "floor_rps": harness.median(p["floor"]["rps"] for p in per),
        "app_rps": harness.median(p["app"]["rps"] for p in per),
        "ratio": round(harness.median(p["ratio"] for p in per), 3),
        "floor_p50_ms": harness.median(p["floor"]["latency_ms"]["p50"] for p in per),
        "app_p50_ms": harness.median(p["app"]["latency_ms"]["p50"] for p in per),
        "errors": sum(p["app"]["errors"] + p["floor"]["errors"] for p in per),
        "per_round": per,
        "round_trips": round_trips,
    }
    result["goal_holds"] = result["ratio"] >= 0.7
    return result


def _round_trips(ctx: harness.Context, body: Any, headers: dict[str, str]) -> dict[str, Any]:
    """Database round trips per request, app and floor, sequential requests on one worker."""
    k = 5 if ctx.smoke else 50
    out: dict[str, Any] = {"requests": k, "method": "ReadyForQuery messages via a proxy"}
    with (
        harness.RoundTrips(ctx.backend.database_url) as counter,
        harness.ApiServer(ctx.log_dir, workers=1, env={"DATABASE_URL": counter.url()}) as api,
    ):
        for which, path in (("floor", "/bench/floor"), ("app", "/v1/tasks")):
            url = api.url(path)
            for i in range(3):  # the connection is opened, caches are warm
                harness.request("POST", url, json.loads(body(i)), headers)
            before = counter.snapshot()
            for i in range(k):
                status, _ = harness.request("POST", url, json.loads(body(i)), headers)
                if not 200 <= status < 300:
                    raise RuntimeError(f"{path} answered {status}")
            after = counter.snapshot()
            out[which] = {
                "per_request": round((after[0] - before[0]) / k, 2),
                "connections": after[1] - before[1],
            }
    harness.purge_queue()
    ctx.say(
        f"database round trips per request: app {out['app']['per_request']:.2f}, "
        f"floor {out['floor']['per_request']:.2f}"
    )
    return out


HEADERS = ["backend", "floor req/s", "app req/s", "ratio", "p50 ms floor/app", "goal ≥ 0.7x",
           "DB round trips floor/app"]  # fmt: skip


def _rows(merged: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, r in merged["backends"].items():
        if "error" in r:
            rows.append([name, r["error"], "", "", "", "", ""])
            continue
        trips = r.get("round_trips")
        rows.append(
            [r["backend"], r["floor_rps"], r["app_rps"], f"{r['ratio']:.2f}x",
             f"{r['floor_p50_ms']:.1f} / {r['app_p50_ms']:.1f}",
             "holds" if r["goal_holds"] else "misses",
             f"{trips['floor']['per_request']:.2f} / {trips['app']['per_request']:.2f}"
             if trips else "-"]
        )  # fmt: skip
    return rows


def report(merged: dict[str, Any]) -> str:
    notes = [
        f"{r['backend']}: gunicorn {r['server']['gunicorn_workers']} workers x "
        f"{r['server']['threads']} threads, {r['clients']} clients, {r['rounds']} rounds x "
        f"{r['seconds_per_run']}s each (median of rounds), {r['errors']} errors"
        for r in merged["backends"].values()
        if "error" not in r
    ]
    return harness.table(HEADERS, _rows(merged)) + "\n" + "\n".join(notes)


def markdown(merged: dict[str, Any]) -> str:
    return harness.markdown_table(HEADERS, _rows(merged))


def chart(merged: dict[str, Any], path: Any) -> None:
    items = [r for r in merged["backends"].values() if "error" not in r]
    with harness.figure(path, 1, TITLE, width=7) as (_fig, axes):
        harness.grouped_bars(
            axes[0],
            [r["backend"] for r in items],
            {
                "floor: bare DRF insert": [r["floor_rps"] for r in items],
                "app: POST /v1/tasks": [r["app_rps"] for r in items],
            },
            ylabel="requests/s (median of rounds)",
            title="higher is better",
            annotate=[f"{r['ratio']:.2f}x floor" for r in items],
        )
