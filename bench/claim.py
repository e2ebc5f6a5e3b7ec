"""9. Claim cost with and without flow control, in the same run.

N due tasks of one queue are claimed the way a wake-up claims them
(``services.claim_due_tasks``, ``BATCH_SIZE`` at a time, until none is left), timed per claimed
task, for three kinds of task in turn (the order rotates from round to round):

- ``plain``: no flow control: the fast claim (one statement on PostgreSQL), plus the probe for
  due flow-controlled keys of the queue (one index probe of an empty partial index);
- ``parallelism``: ``flowControl {key, parallelism: N}`` (the limit never binds, so what is
  measured is the gated path's own cost: the limiter row's lock, the in-flight count, the
  claim by primary key);
- ``rate``: ``flowControl {key, rate: N, period: 60}`` (the same, with the start-time window
  read and written).

The floor is ``plain``: every ratio is kind ÷ plain (above 1: dearer). No worker and no HTTP:
the claims run in this process and nothing is published (the publisher is a no-op here).
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness

NAME = "claim"
TITLE = "Claim cost per task with and without flow control"
FLOOR = "the claim of tasks without flow control, same run"
GOAL = "diagnostic (the gated path's cost per claimed task; plain is the fast path)"
BACKENDS = ("pg", "embedded")
QUEUE = "aqclaim"
KINDS = ("plain", "parallelism", "rate")


def add_arguments(group: Any) -> None:
    group.add_argument("--claim-tasks", type=int, default=1000, help="tasks claimed per sample")


def _flow(kind: str, n: int) -> Any:
    from asyncqueue_django.values import FlowControl

    if kind == "parallelism":
        return FlowControl("bench-parallelism", parallelism=min(n, 1000))
    if kind == "rate":
        return FlowControl("bench-rate", rate=min(n, 1000), period=60)
    return None


def _sample(team: Any, kind: str, n: int) -> float:
    """Seconds per claimed task to claim ``n`` due tasks of ``kind``."""
    from asyncqueue_django import services
    from asyncqueue_django.conf import app_settings
    from asyncqueue_django.models import FlowLimiter, Task
    from asyncqueue_django.services import BatchItem, TaskSpec

    spec = TaskSpec(target_url="http://127.0.0.1:9/claim", queue=QUEUE, flow_control=_flow(kind, n))
    for start in range(0, n, 100):
        services.create_tasks(team, [BatchItem(spec) for _ in range(min(100, n - start))])
    claimed = 0
    t0 = time.perf_counter()
    while True:
        got = services.claim_due_tasks(QUEUE, "bench", limit=app_settings.BATCH_SIZE)
        if not got:
            break
        claimed += len(got)
    elapsed = time.perf_counter() - t0
    if claimed != n:
        raise RuntimeError(f"{kind}: claimed {claimed} of {n}")
    Task.objects.filter(queue=QUEUE).delete()
    FlowLimiter.objects.all().delete()
    return elapsed / n


def run(ctx: harness.Context) -> dict[str, Any]:
    from django.db import connection

    from asyncqueue_django.services import engine

    n = 100 if ctx.smoke else int(ctx.args.claim_tasks)
    rounds = ctx.rounds(5)
    team, _ = harness.bench_team()
    previous = engine.set_publisher(lambda message: None)  # nothing runs the claimed tasks
    samples: dict[str, list[float]] = {k: [] for k in KINDS}
    try:
        for i in range(rounds + 1):  # round 0 warms caches up and is dropped
            order = KINDS[i % len(KINDS) :] + KINDS[: i % len(KINDS)]
            for kind in order:
                per_task = _sample(team, kind, n)
                if i:
                    samples[kind].append(per_task)
            if i:
                ctx.say(
                    f"round {i}: "
                    + ", ".join(f"{k} {samples[k][-1] * 1e6:.0f} µs/task" for k in KINDS)
                )
    finally:
        engine.set_publisher(previous)
    medians = {k: harness.median(v) for k, v in samples.items()}
    return {
        "vendor": connection.vendor,
        "rounds": rounds,
        "tasks": n,
        "per_task_us": {k: round(v * 1e6, 1) for k, v in medians.items()},
        "ratios": {k: round(medians[k] / medians["plain"], 2) for k in KINDS},
    }


HEADERS = ["backend", "kind", "tasks", "µs per claimed task", "ratio to plain"]


def _rows(merged: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, r in merged["backends"].items():
        if "error" in r:
            rows.append([name, r["error"], "", "", ""])
            continue
        for kind in KINDS:
            ratio = f"{r['ratios'][kind]:.2f}x" + (" (floor)" if kind == "plain" else "")
            rows.append([r["backend"], kind, r["tasks"], r["per_task_us"][kind], ratio])
    return rows


def report(merged: dict[str, Any]) -> str:
    return harness.table(HEADERS, _rows(merged))


def markdown(merged: dict[str, Any]) -> str:
    return harness.markdown_table(HEADERS, _rows(merged))


def chart(merged: dict[str, Any], path: Any) -> None:
    items = [r for r in merged["backends"].values() if "error" not in r]
    with harness.figure(path, 1, TITLE, width=7) as (_fig, axes):
        ax = axes[0]
        width = 0.8 / max(len(items), 1)
        for j, r in enumerate(items):
            xs = [i + j * width for i in range(len(KINDS))]
            ax.bar(xs, [r["per_task_us"][k] for k in KINDS], width, label=r["backend"])
        ax.set_xticks([i + width * (len(items) - 1) / 2 for i in range(len(KINDS))])
        ax.set_xticklabels(KINDS)
        ax.set_ylabel("µs per claimed task (median)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
