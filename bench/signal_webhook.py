"""4. Signal → webhook latency: ``POST /v1/signals/{token}`` (on gunicorn) → the onComplete
webhook arrives at its URL; against one bare Celery round trip (``ping.delay()`` → body
starts) plus one HTTP POST to the same target, measured in the same run, sample by sample.

Runs once the app sends onComplete webhooks (``asyncqueue_django.models.WebhookDelivery``);
before that it records that the feature is missing.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench import harness

NAME = "signal_webhook"
TITLE = "Signal → webhook latency"
FLOOR = "one bare Celery round trip (delay() → body starts) + one HTTP POST to the target"
GOAL = "p50 ≤ 1.5x floor"
BACKENDS = ("pg", "embedded")


def add_arguments(group: Any) -> None:
    group.add_argument("--signal-webhook-tasks", type=int, default=300)


def run(ctx: harness.Context) -> dict[str, Any]:
    from django.db import transaction

    from asyncqueue_django import services
    from asyncqueue_django.models import Task
    from bench.celery_app import ping
    from bench.polling import webhooks_available

    if not webhooks_available():
        # An app without onComplete webhooks: recorded as not measured, never faked.
        return {"not_measured": "onComplete webhooks are not implemented"}
    n = 6 if ctx.smoke else ctx.args.signal_webhook_tasks
    rounds = ctx.rounds(5)
    per_round = max(1, n // rounds)
    team, _ = harness.bench_team()
    per: list[dict[str, Any]] = []
    all_app: list[float] = []
    all_floor: list[float] = []
    with (
        harness.TargetServer() as target,
        harness.UdpCollector() as udp,
        harness.Worker(ctx.log_dir, pool="threads", concurrency=8),
        harness.ApiServer(ctx.log_dir, workers=2) as api,
    ):

        def floor_sample() -> float:
            key = uuid.uuid4().hex
            t0 = time.time()
            ping.delay(udp.port, key)
            celery = udp.wait(key) - t0
            t1 = time.time()
            harness.request("POST", target.url(f"/floor/{key}"), {"event": "task.completed"})
            return celery + (time.time() - t1)

        def prepare(count: int, tag: str) -> list[tuple[str, str]]:
            made = []
            with transaction.atomic():
                for i in range(count):
                    spec = services.TaskSpec(
                        target_url=target.url(f"/sw-cb/{tag}/{i}"),
                        wait_for_signal=True,
                        max_wait_time=3600,
                        queue=harness.QUEUE,
                        on_complete_url=target.url(f"/sw/{tag}/{i}"),
                    )
                    created = services.create_task(team, spec)
                    made.append((str(created.signal_token), f"/sw/{tag}/{i}"))
            ids = [str(t) for t in Task.objects.filter(target_url__contains=f"/sw-cb/{tag}/")
                   .values_list("pk", flat=True)]  # fmt: skip
            deadline = time.monotonic() + 120
            while Task.objects.filter(pk__in=ids, status="waiting").count() < count:
                if time.monotonic() > deadline:
                    raise TimeoutError("tasks did not reach waiting")
                time.sleep(0.05)
            return made

        def app_sample(token: str, hook: str) -> float:
            t0 = time.time()
            status, body = harness.request(
                "POST", api.url(f"/v1/signals/{token}"), {"status": "completed"}
            )
            assert status == 200, (status, body)
            return target.wait(hook, timeout=30) - t0

        ctx.say("warm-up")
        for token, hook in prepare(2 if ctx.smoke else 5, "warm"):
            floor_sample()
            app_sample(token, hook)
        for r in range(rounds):
            made = prepare(per_round, f"r{r}")
            floor: list[float] = []
            app: list[float] = []
            for i, (token, hook) in enumerate(made):
                if (i + r) % 2:
                    floor.append(floor_sample())
                    app.append(app_sample(token, hook))
                else:
                    app.append(app_sample(token, hook))
                    floor.append(floor_sample())
                time.sleep(0.005)
            fl, ap = harness.percentiles_ms(floor), harness.percentiles_ms(app)
            per.append({"floor_ms": fl, "app_ms": ap,
                        "ratio": {k: round(ap[k] / fl[k], 3) for k in fl}})  # fmt: skip
            all_app += app
            all_floor += floor
            ctx.say(
                f"round {r + 1}/{rounds}: p50 {ap['p50']:.1f} ms vs floor {fl['p50']:.1f} ms "
                f"({ap['p50'] / fl['p50']:.2f}x)"
            )
    keys = ("p50", "p95", "p99")
    result: dict[str, Any] = {
        "samples": len(all_app),
        "rounds": rounds,
        "floor_ms": {k: harness.median(p["floor_ms"][k] for p in per) for k in keys},
        "app_ms": {k: harness.median(p["app_ms"][k] for p in per) for k in keys},
        "ratio": {k: round(harness.median(p["ratio"][k] for p in per), 3) for k in keys},
        "per_round": per,
        "cdf": {
            "floor_ms": [round(v * 1000, 3) for v in sorted(all_floor)],
            "app_ms": [round(v * 1000, 3) for v in sorted(all_app)],
        },
    }
    result["goal_holds"] = result["ratio"]["p50"] <= 1.5
    return result


HEADERS = ["backend", "pct", "floor ms", "app ms", "ratio", "goal"]


def _rows(merged: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, r in merged["backends"].items():
        if "error" in r or "not_measured" in r:
            rows.append([name, r.get("error") or r["not_measured"], "", "", "", ""])
            continue
        for k in ("p50", "p95", "p99"):
            goal = "≤ 1.5x " + ("holds" if r["goal_holds"] else "misses") if k == "p50" else ""
            rows.append(
                [r["backend"], k, r["floor_ms"][k], r["app_ms"][k], f"{r['ratio'][k]:.2f}x", goal]
            )
    return rows


def report(merged: dict[str, Any]) -> str:
    return harness.table(HEADERS, _rows(merged))


def markdown(merged: dict[str, Any]) -> str:
    return harness.markdown_table(HEADERS, _rows(merged))


def chart(merged: dict[str, Any], path: Any) -> None:
    items = [r for r in merged["backends"].values() if "cdf" in r]
    with harness.figure(path, max(1, len(items)), TITLE) as (_fig, axes):
        if not items:
            axes[0].text(0.5, 0.5, "not measured: webhooks not implemented", ha="center")
            return
        for ax, r in zip(axes, items, strict=False):
            for label, data in (
                ("floor: Celery round trip + POST", r["cdf"]["floor_ms"]),
                ("app: signal → webhook", r["cdf"]["app_ms"]),
            ):
                ax.plot(data, [(i + 1) / len(data) for i in range(len(data))], label=label)
            harness.log_x(ax, "latency (ms, log scale)")
            ax.set_ylabel("fraction of samples")
            ax.set_title(f"{r['backend']}: p50 {r['ratio']['p50']:.2f}x floor", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
