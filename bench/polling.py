"""6. Polling vs long polling vs signal (+ webhook): how late a client learns that a task has
finished, and how many API calls it makes, for tasks that finish 1 s, 10 s and 60 s after
creation (times scaled by ``--polling-scale``).

Every task is created over HTTP with ``waitForSignal`` (and an ``onCompleteUrl`` when the app
sends webhooks); its callback runs at once, and the outside event — a signal POST — comes the
chosen time after creation. For the same task, at the same time:

- a polling client GETs ``/v1/tasks/{id}`` every interval (5 s, scaled), starting at a random
  phase as real clients do;
- a long-polling client GETs ``/v1/tasks/{id}?wait=25`` in a loop (when the server supports
  ``?wait=``; a probe decides);
- the signal POST itself answers with the finished task (the party that signals knows at
  once, in one call), and the webhook, if any, reaches ``onCompleteUrl``.

Lag is measured from the moment the signal is sent. API calls exclude the shared create.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from bench import harness

NAME = "polling"
TITLE = "Polling vs long polling vs signal (+webhook): detection lag and API calls"
FLOOR = "the signal POST's own round trip (the earliest moment the outcome exists)"
GOAL = "publish the measured table beside what each strategy is expected to do"
BACKENDS = ("pg", "embedded")
TERMINAL = {"completed", "failed", "timeout", "cancelled"}
EXPECTED = {
    "polling": ("up to one poll interval", "many (proportional to wait time)"),
    "long polling": ("within one check (0.2 s)", "one per wait window"),
    "signal": ("instant", "one"),
    "signal + webhook": ("instant", "one"),
}


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--polling-scale", type=float, default=1.0, help="multiplies 1/10/60 s and the 5 s poll"
    )
    group.add_argument("--polling-tasks", type=int, default=10, help="tasks per duration")
    group.add_argument("--polling-long-wait", type=int, default=25, help="?wait= seconds")


def webhooks_available() -> bool:
    """The app sends onComplete webhooks once it has a delivery model."""
    from asyncqueue_django import models

    return hasattr(models, "WebhookDelivery")


def _create(api: harness.ApiServer, headers: dict[str, str], body: dict[str, Any]) -> Any:
    status, data = harness.request("POST", api.url("/v1/tasks"), body, headers)
    assert status == 201, (status, data)
    return data


def _wait_status(task_id: str, status: str, timeout: float = 30) -> None:
    from django.db import connection

    from asyncqueue_django.models import Task

    deadline = time.monotonic() + timeout
    try:
        while not Task.objects.filter(pk=task_id, status=status).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} did not reach {status}")
            time.sleep(0.01)
    finally:
        connection.close()


def long_poll_supported(
    api: harness.ApiServer, headers: dict[str, str], target: harness.TargetServer
) -> bool:
    """``GET /v1/tasks/{id}?wait=1`` on a waiting task holds for about a second if the server
    implements long polling, and answers at once if it ignores ``wait``."""
    data = _create(
        api,
        headers,
        {"targetUrl": target.url("/probe"), "waitForSignal": True, "queue": harness.QUEUE},
    )
    task_id = data["task"]["id"]
    _wait_status(task_id, "waiting")
    t0 = time.monotonic()
    status, _ = harness.request("GET", api.url(f"/v1/tasks/{task_id}?wait=1"), headers=headers)
    held = time.monotonic() - t0
    harness.request("POST", api.url(f"/v1/tasks/{task_id}/cancel"), headers=headers)
    return status == 200 and held >= 0.7


def run(ctx: harness.Context) -> dict[str, Any]:
    args = ctx.args
    scale = 0.03 if ctx.smoke else args.polling_scale
    per_duration = 1 if ctx.smoke else args.polling_tasks
    durations = [1.0, 10.0, 60.0]
    interval = 5.0 * scale
    _, key = harness.bench_team()
    headers = {"Authorization": f"Bearer {key}"}
    hooks = webhooks_available()
    samples: list[dict[str, Any]] = []
    errors: list[str] = []
    with (
        harness.TargetServer() as target,
        harness.Worker(ctx.log_dir, pool="threads", concurrency=8),
        # Every long poll holds a server thread: room for all of them, the polls and signals.
        harness.ApiServer(ctx.log_dir, workers=2, threads=max(16, 3 * per_duration * 2)) as api,
    ):
        long_poll = long_poll_supported(api, headers, target)
        ctx.say(f"long polling supported: {long_poll}; webhooks: {hooks}; scale {scale}")

        def one(nominal: float, rep: int) -> None:
            k = f"{nominal:g}-{rep}"
            d = nominal * scale
            body: dict[str, Any] = {
                "targetUrl": target.url(f"/poll-cb/{k}"),
                "waitForSignal": True,
                "maxWaitTime": 3600,
                "queue": harness.QUEUE,
            }
            if hooks:
                body["onCompleteUrl"] = target.url(f"/hook/{k}")
            data = _create(api, headers, body)
            created = time.time()
            task_id, token = data["task"]["id"], data["signalToken"]
            sample: dict[str, Any] = {"nominal_s": nominal, "finish_after_s": d}
            event_at = created + d
            done = threading.Event()

            def poller() -> None:
                calls = 0
                time.sleep(random.uniform(0, interval))
                while True:
                    calls += 1
                    _, got = harness.request(
                        "GET", api.url(f"/v1/tasks/{task_id}"), headers=headers
                    )
                    if got["task"]["status"] in TERMINAL:
                        sample["polling"] = {"detected_at": time.time(), "calls": calls}
                        return
                    time.sleep(interval)

            def long_poller() -> None:
                calls = 0
                while True:
                    calls += 1
                    _, got = harness.request(
                        "GET",
                        api.url(f"/v1/tasks/{task_id}?wait={args.polling_long_wait}"),
                        headers=headers,
                        timeout=args.polling_long_wait + 30,
                    )
                    if got["task"]["status"] in TERMINAL:
                        sample["long polling"] = {"detected_at": time.time(), "calls": calls}
                        return
                    if done.is_set() and calls > 1000:
                        return

            threads = [threading.Thread(target=poller)]
            if long_poll:
                threads.append(threading.Thread(target=long_poller))
            for t in threads:
                t.start()
            _wait_status(task_id, "waiting")
            time.sleep(max(0.0, event_at - time.time()))
            sent = time.time()
            status, _ = harness.request(
                "POST", api.url(f"/v1/signals/{token}"), {"status": "completed"}
            )
            sample["event_at"] = sent
            sample["signal"] = {"detected_at": time.time(), "calls": 1, "http_status": status}
            done.set()
            if hooks:
                try:
                    at = target.wait(f"/hook/{k}", timeout=30)
                    sample["signal + webhook"] = {"detected_at": at, "calls": 1}
                except TimeoutError:
                    errors.append(f"no webhook for {k}")
            for t in threads:
                t.join(timeout=d + interval + args.polling_long_wait + 60)
            samples.append(sample)

        workers = [
            threading.Thread(target=one, args=(d, rep))
            for d in durations
            for rep in range(per_duration)
        ]
        for w in workers:
            w.start()
            time.sleep(0.1)
        for w in workers:
            w.join()
    strategies = ["polling", "long polling", "signal", "signal + webhook"]
    table: dict[str, dict[str, Any]] = {}
    for strategy in strategies:
        for nominal in durations:
            got = [s for s in samples if s["nominal_s"] == nominal and strategy in s]
            if not got:
                continue
            lags = [s[strategy]["detected_at"] - s["event_at"] for s in got]
            calls = [s[strategy]["calls"] for s in got]
            table.setdefault(strategy, {})[f"{nominal:g}"] = {
                "lag_median_s": round(harness.median(lags), 4),
                "lag_mean_s": round(sum(lags) / len(lags), 4),
                "lag_max_s": round(max(lags), 4),
                "lag_in_poll_intervals": round(harness.median(lags) / interval, 3),
                "calls_median": harness.median(calls),
                "calls_max": max(calls),
                "n": len(got),
            }
    missing = []
    if not long_poll:
        # An app without long polling (before 135203a) answers ?wait= at once: said, not faked.
        missing.append("long polling: the server ignores ?wait= (not implemented)")
    if not hooks:
        # An app without onComplete webhooks (no WebhookDelivery): said, not faked.
        missing.append("signal + webhook: onComplete webhooks not implemented")
    return {
        "scale": scale,
        "poll_interval_s": interval,
        "tasks_per_duration": per_duration,
        "durations_nominal_s": durations,
        "results": table,
        "not_measured": missing,
        "errors": errors,
    }


HEADERS = ["backend", "strategy", "finishes after", "lag median", "lag mean", "lag max",
           "API calls", "expected lag", "expected calls"]  # fmt: skip


def _ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.0f} ms"


def _rows(merged: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, r in merged["backends"].items():
        if "error" in r:
            rows.append([name, r["error"], *[""] * 7])
            continue
        for strategy, by_d in r["results"].items():
            label = strategy
            if strategy == "polling":
                label = f"polling every {r['poll_interval_s']:g} s"
            for d, v in by_d.items():
                calls = f"{v['calls_median']:g}"
                if v["calls_max"] != v["calls_median"]:
                    calls += f" (max {v['calls_max']})"
                rows.append(
                    [r["backend"], label, f"{float(d) * r['scale']:g} s",
                     _ms(v["lag_median_s"]), _ms(v.get("lag_mean_s", float("nan"))),
                     _ms(v["lag_max_s"]), calls, *EXPECTED[strategy]]
                )  # fmt: skip
        for note in r["not_measured"]:
            rows.append([r["backend"], note, *[""] * 7])
    return rows


def report(merged: dict[str, Any]) -> str:
    notes = [
        f"{r['backend']}: {r['tasks_per_duration']} tasks per duration, time scale {r['scale']}; "
        "lag from the signal being sent; API calls exclude the create"
        for r in merged["backends"].values()
        if "error" not in r
    ]
    return harness.table(HEADERS, _rows(merged)) + "\n" + "\n".join(notes)


def markdown(merged: dict[str, Any]) -> str:
    return harness.markdown_table(HEADERS, _rows(merged))


def chart(merged: dict[str, Any], path: Any) -> None:
    items = [r for r in merged["backends"].values() if "error" not in r]
    with harness.figure(path, 2 * len(items), TITLE, width=4.8) as (_fig, axes):
        for i, r in enumerate(items):
            durations = [f"{d * r['scale']:g} s" for d in r["durations_nominal_s"]]
            keys = [f"{d:g}" for d in r["durations_nominal_s"]]
            lag = {
                s: [by_d.get(k, {}).get("lag_median_s", float("nan")) for k in keys]
                for s, by_d in r["results"].items()
            }
            calls = {
                s: [by_d.get(k, {}).get("calls_median", float("nan")) for k in keys]
                for s, by_d in r["results"].items()
            }
            harness.grouped_bars(
                axes[2 * i], durations, lag, ylabel="detection lag (s, median)",
                title=f"{r['backend']}: lag",
            )  # fmt: skip
            harness.grouped_bars(
                axes[2 * i + 1], durations, calls, ylabel="API calls (median)",
                title=f"{r['backend']}: calls",
            )  # fmt: skip
