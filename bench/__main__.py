"""``python -m bench <name>|all [--backend pg|embedded|both] [--smoke] [knobs]``.

The parent process (this one, without Django) runs each benchmark once per backend in a
child process, merges the children's results into ``bench/results/<name>.json``, prints the
table and draws ``bench/results/<name>.png``. ``python -m bench --help`` lists the knobs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import BENCHMARKS, harness, peers


def load(name: str) -> ModuleType:
    return importlib.import_module(f"bench.{name}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="asyncqueue_django benchmarks; every figure is a ratio to a floor "
        "measured in the same run.",
    )
    p.add_argument(
        "name",
        choices=[*BENCHMARKS, "all", "report"],
        help="benchmark to run, all of them, or report (tables, charts and summary.md "
        "again from the JSON already in the results directory)",
    )
    p.add_argument(
        "--backend",
        choices=["pg", "embedded", "both"],
        help="pg (PostgreSQL + Redis), embedded (SQLite + embedded broker) or both; "
        "default: each benchmark's own choice",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    p.add_argument("--rounds", type=int, help="repetitions (medians are reported)")
    p.add_argument("--results-dir", type=Path, default=harness.RESULTS_DIR)
    p.add_argument(
        "--state-dir", type=Path, help="SQLite files and logs (default: $TMPDIR/aqbench)"
    )
    p.add_argument("--pg-url", default=harness.DEFAULT_PG_URL, help="database of the pg backend")
    p.add_argument("--broker-url", default=harness.DEFAULT_REDIS_URL, help="broker of pg backend")
    p.add_argument("--reuse-db", action="store_true", help="keep the database (default: new)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    peers.add_arguments(p.add_argument_group("peers (callbacks, dispatch)"))
    for name in BENCHMARKS:
        group = p.add_argument_group(name)
        load(name).add_arguments(group)
    return p


def _child_argv(argv: list[str], name: str, backend: str) -> list[str]:
    rest: list[str] = []
    skip = False
    dropped_name = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--backend":
            skip = True
            continue
        if arg.startswith("--backend="):
            continue
        if not dropped_name and not arg.startswith("-") and arg in (*BENCHMARKS, "all"):
            dropped_name = True
            continue
        rest.append(arg)
    return [name, *rest, "--backend", backend, "--child"]


def run_child(args: argparse.Namespace) -> int:
    def _terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    module = load(args.name)
    backend = harness.backend_for(args.backend, args)
    harness.setup_django()
    harness.prepare_database()
    harness.purge_queue()
    log_dir = backend.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    ctx = harness.Context(args=args, backend=backend, log_dir=log_dir)
    started = time.monotonic()
    result = module.run(ctx)
    harness.purge_queue()
    result["backend"] = backend.label
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    harness.write_json(_partial(args.results_dir, args.name, args.backend), result)
    return 0


def _partial(results_dir: Path, name: str, backend: str) -> Path:
    return results_dir / ".partial" / f"{name}.{backend}.json"


def run_report(args: argparse.Namespace) -> int:
    summary: list[tuple[str, dict[str, Any]]] = []
    for name in BENCHMARKS:
        path = args.results_dir / f"{name}.json"
        if not path.exists():
            continue
        merged = json.loads(path.read_text())
        module = load(name)
        print(f"\n=== {name}: {module.TITLE}\n    floor: {module.FLOOR}\n")
        print(module.report(merged))
        module.chart(merged, args.results_dir / f"{name}.png")
        summary.append((name, merged))
    text = summary_markdown(summary)
    (args.results_dir / "summary.md").write_text(text)
    print(f"\n=== summary ({args.results_dir / 'summary.md'})\n" + text)
    return 0


def run_parent(args: argparse.Namespace, argv: list[str]) -> int:
    if args.name == "report":
        return run_report(args)
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    wanted = (
        None
        if args.backend is None
        else (["pg", "embedded"] if args.backend == "both" else [args.backend])
    )
    plan = [(n, [b for b in load(n).BACKENDS if wanted is None or b in wanted]) for n in names]
    failures = 0
    if not args.reuse_db:
        for backend in sorted({b for _, bs in plan for b in bs}):
            harness.recreate_database(harness.backend_for(backend, args))
    summary: list[tuple[str, dict[str, Any]]] = []
    for name, backends in plan:
        module = load(name)
        print(f"\n=== {name}: {module.TITLE}\n    floor: {module.FLOOR}", flush=True)
        merged: dict[str, Any] = {
            "benchmark": name,
            "title": module.TITLE,
            "floor": module.FLOOR,
            "goal": module.GOAL,
            "smoke": args.smoke,
            "meta": harness.meta(),
            "backends": {},
        }
        for backend_name in backends:
            backend = harness.backend_for(backend_name, args)
            partial = _partial(args.results_dir, name, backend_name)
            partial.unlink(missing_ok=True)
            env = {**os.environ, **backend.env()}
            cmd = [sys.executable, "-m", "bench", *_child_argv(argv, name, backend_name)]
            started = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=harness.ROOT, env=env)
            try:
                code = proc.wait()
            except KeyboardInterrupt:
                proc.terminate()
                proc.wait()
                raise
            if code != 0 or not partial.exists():
                failures += 1
                merged["backends"][backend_name] = {"error": f"exit code {code}"}
                print(f"  [{backend_name}] FAILED (exit code {code})", flush=True)
                continue
            merged["backends"][backend_name] = json.loads(partial.read_text())
            partial.unlink()
            print(f"  [{backend_name}] done in {time.monotonic() - started:.0f}s", flush=True)
        harness.write_json(args.results_dir / f"{name}.json", merged)
        print()
        print(module.report(merged))
        try:
            module.chart(merged, args.results_dir / f"{name}.png")
        except Exception as exc:  # a chart is never worth losing the numbers for
            failures += 1
            print(f"  chart failed: {exc!r}")
        summary.append((name, merged))
    if args.name == "all":
        text = summary_markdown(summary)
        (args.results_dir / "summary.md").write_text(text)
        print("\n=== summary (also bench/results/summary.md)\n" + text)
    return 1 if failures else 0


def summary_markdown(summary: list[tuple[str, dict[str, Any]]]) -> str:
    out = []
    for name, merged in summary:
        module = load(name)
        out.append(
            f"### {name}: {merged['title']}\n\nCompared with: {merged['floor']}. "
            f"Goal: {merged['goal']}. Measured {merged['meta']['date']} at commit "
            f"{merged['meta']['commit']}.\n\n{module.markdown(merged)}\n"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.child:
        return run_child(args)
    return run_parent(args, argv)


if __name__ == "__main__":
    sys.exit(main())
