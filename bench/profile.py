"""8. Profile of the hot paths (pyinstrument), in one process so the profiler sees all of it:

- create: ``POST /v1/tasks`` through Django's full handler (``django.test.Client``), against
  the floor view;
- callback: the body of ``asyncqueue.execute_task`` (claim → build → HTTP call → record),
  phase by phase with query counts, against a raw ``requests.Session`` POST to the same target.

Writes ``bench/results/profile_create.txt`` and ``profile_callback.txt`` (call trees) next to
the JSON.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench import harness

NAME = "profile"
TITLE = "Hot-path profile: create request and callback execution, phase by phase"
FLOOR = "floor view request (create); raw requests.Session POST to the same target (callback)"
GOAL = "none (diagnostic): shows where the time above the floors goes"
BACKENDS = ("pg", "embedded")


def add_arguments(group: Any) -> None:
    group.add_argument("--profile-tasks", type=int, default=400)


def _timed(fn: Any, *a: Any, **kw: Any) -> tuple[Any, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as q:
        t0 = time.perf_counter()
        value = fn(*a, **kw)
        elapsed = time.perf_counter() - t0
    _LAST_SQL[:] = [str(x["sql"])[:160] for x in q.captured_queries]
    return value, elapsed, len(q.captured_queries)


_LAST_SQL: list[str] = []


def run(ctx: harness.Context) -> dict[str, Any]:
    import requests
    from django.test import Client
    from pyinstrument import Profiler

    from asyncqueue_django import http, outbound, services, tasks

    n = 30 if ctx.smoke else ctx.args.profile_tasks
    team, key = harness.bench_team()
    out_dir = ctx.args.results_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"tasks": n}
    with harness.TargetServer() as target:
        url = target.url("/profile")
        client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")

        def create_body(i: int) -> str:
            return json.dumps({"targetUrl": url, "payload": {"orderId": i}, "queue": harness.QUEUE})

        # --- create: floor view vs POST /v1/tasks, then a profile of the latter
        def post(path: str, i: int) -> float:
            t0 = time.perf_counter()
            response = client.post(path, create_body(i), content_type="application/json")
            assert response.status_code == 201, response.content[:300]
            return time.perf_counter() - t0

        for i in range(20):
            post("/bench/floor", i)
            post("/v1/tasks", i)
        floor_t = [post("/bench/floor", i) for i in range(n)]
        app_t = [post("/v1/tasks", i) for i in range(n)]
        _, _, create_queries = _timed(post, "/v1/tasks", 0)
        create_sql = list(_LAST_SQL)
        _, _, floor_queries = _timed(post, "/bench/floor", 0)
        # The same service call without HTTP, DRF or the serializers.
        spec = services.TaskSpec(target_url=url, payload={"orderId": 1}, queue=harness.QUEUE)
        service_t = [_timed(services.create_task, team, spec)[1] for _ in range(n)]
        profiler = Profiler(interval=0.0002)
        profiler.start()
        for i in range(n):
            post("/v1/tasks", i)
        profiler.stop()
        (out_dir / f"profile_create.{ctx.backend.name}.txt").write_text(
            profiler.output_text(unicode=True, color=False, show_all=False)
        )
        harness.purge_queue()
        result["create"] = {
            "floor_view_ms": round(harness.median(floor_t) * 1000, 3),
            "api_ms": round(harness.median(app_t) * 1000, 3),
            "service_create_task_ms": round(harness.median(service_t) * 1000, 3),
            "ratio": round(harness.median(app_t) / harness.median(floor_t), 3),
            "queries_api": create_queries,
            "queries_floor": floor_queries,
            "sql_api": create_sql,
        }
        ctx.say(f"create: {result['create']}")

        # --- callback: execute_task's steps, timed one by one, then profiled as a whole
        def make_tasks(count: int) -> list[str]:
            ids = [str(services.create_task(team, spec).task.pk) for _ in range(count)]
            harness.purge_queue()  # this process runs them, not a worker
            return ids

        session = requests.Session()
        for _ in range(20):
            session.post(url, json={"orderId": 1})
        raw_t = []
        for _ in range(n):
            t0 = time.perf_counter()
            session.post(url, json={"orderId": 1}).content  # noqa: B018
            raw_t.append(time.perf_counter() - t0)
        phases: dict[str, list[float]] = {"claim": [], "build": [], "call": [], "finish": []}
        queries: dict[str, int] = {}
        me = tasks.worker_id()
        for task_id in make_tasks(n):
            task, t_claim, q_claim = _timed(services.claim_task, task_id, worker=me)
            (headers, body), t_build, q_build = _timed(outbound.build_callback, task)
            call, t_call, _ = _timed(
                http.call, task.method, task.target_url, headers=headers, body=body,
                timeout=task.timeout,
            )  # fmt: skip
            _, t_finish, q_finish = _timed(services.finish_attempt, task, call, worker=me)
            for k, v in zip(phases, (t_claim, t_build, t_call, t_finish), strict=True):
                phases[k].append(v)
            finish_sql = list(_LAST_SQL)
            queries = {"claim": q_claim, "build": q_build, "finish": q_finish}
        ids = make_tasks(n)
        profiler = Profiler(interval=0.0002)
        profiler.start()
        for task_id in ids:
            tasks.execute_task.run(task_id)
        profiler.stop()
        (out_dir / f"profile_callback.{ctx.backend.name}.txt").write_text(
            profiler.output_text(unicode=True, color=False, show_all=False)
        )
        med = {k: round(harness.median(v) * 1000, 3) for k, v in phases.items()}
        total = sum(med.values())
        raw = round(harness.median(raw_t) * 1000, 3)
        result["callback"] = {
            "phases_ms": med,
            "total_ms": round(total, 3),
            "raw_requests_post_ms": raw,
            "ratio": round(total / raw, 3),
            "queries": queries,
            "sql_finish": finish_sql,
        }
        ctx.say(f"callback: {result['callback']}")
    return result


HEADERS = ["backend", "path", "floor ms", "app ms", "ratio", "queries (app)", "breakdown"]


def _rows(merged: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, r in merged["backends"].items():
        if "error" in r:
            rows.append([name, r["error"], "", "", "", "", ""])
            continue
        c, b = r["create"], r["callback"]
        rows.append(
            [r["backend"], "create (Django handler)", c["floor_view_ms"], c["api_ms"],
             f"{c['ratio']:.2f}x",
             f"{c['queries_api']} (floor {c['queries_floor']})",
             f"service create_task alone {c['service_create_task_ms']:.2f} ms"]
        )  # fmt: skip
        ph = b["phases_ms"]
        rows.append(
            [r["backend"], "callback (execute_task)", b["raw_requests_post_ms"], b["total_ms"],
             f"{b['ratio']:.2f}x", sum(b["queries"].values()),
             ", ".join(f"{k} {v:.2f}" for k, v in ph.items())]
        )  # fmt: skip
    return rows


def report(merged: dict[str, Any]) -> str:
    return (
        harness.table(HEADERS, _rows(merged))
        + "\ncall trees: bench/results/profile_create.<backend>.txt, profile_callback.<backend>.txt"
    )


def markdown(merged: dict[str, Any]) -> str:
    return harness.markdown_table(HEADERS, _rows(merged))


def chart(merged: dict[str, Any], path: Any) -> None:
    items = [r for r in merged["backends"].values() if "error" not in r]
    with harness.figure(path, len(items), TITLE, width=8) as (_fig, axes):
        for ax, r in zip(axes, items, strict=False):
            ph = r["callback"]["phases_ms"]
            labels = ["callback floor\n(raw POST)", "callback\n(execute_task)"]
            ax.bar([0], [r["callback"]["raw_requests_post_ms"]], 0.6, label="raw POST")
            bottom = 0.0
            for k, v in ph.items():
                ax.bar([1], [v], 0.6, bottom=[bottom], label=f"callback: {k}")
                bottom += v
            c = r["create"]
            ax.bar([2], [c["floor_view_ms"]], 0.6, label="create floor view")
            ax.bar([3], [c["service_create_task_ms"]], 0.6, label="create: service call")
            ax.bar(
                [3], [c["api_ms"] - c["service_create_task_ms"]], 0.6,
                bottom=[c["service_create_task_ms"]], label="create: API layer",
            )  # fmt: skip
            ax.set_xticks(range(4))
            ax.set_xticklabels([*labels, "create floor\n(bare DRF)", "create\n(POST /v1/tasks)"])
            ax.set_ylabel("ms per request (median)")
            ax.set_title(r["backend"], fontsize=10)
            ax.legend(fontsize=7)
