"""The benchmark suite still runs: ``python -m bench all --smoke`` on this run's services.

Tiny sizes, a subprocess (the benchmarks start their own workers and gunicorn), results in a
temporary directory (never ``bench/results``). On PostgreSQL the benchmarks use a database of
their own next to the test database (``<name>_aqbench_<pid>``, dropped afterwards) and a queue
of their own (``aqbench_<pid>``), so neither a test worker nor a concurrent run on the same
services ever sees their rows or messages.

It needs the ``bench`` extra (gunicorn, matplotlib, psutil); without it, it is skipped.
Deselect with ``-m "not worker"`` (it runs real workers) or ``--deselect`` this file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench import BENCHMARKS

pytestmark = [pytest.mark.worker, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parent.parent

for module in ("gunicorn", "matplotlib", "psutil", "pyinstrument"):
    pytest.importorskip(module, reason="the bench extra is not installed")


def _backend_args() -> list[str]:
    database = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if database.startswith(("postgres://", "postgresql://")) and broker.startswith("redis://"):
        parts = urlsplit(database)
        name = f"{parts.path.lstrip('/') or 'postgres'}_aqbench_{os.getpid()}"
        return [
            "--backend",
            "pg",
            "--pg-url",
            urlunsplit(parts._replace(path=f"/{name}")),
            "--broker-url",
            broker,
        ]
    return ["--backend", "embedded"]


def _drop_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')


def _drop_queue_keys(url: str, queue: str) -> None:
    """The run's queue and its kombu bindings (the name is this run's own)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_every_benchmark_runs_in_smoke_mode(tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = {
        k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTEST_ADDOPTS")
    }
    env["BENCH_QUEUE"] = f"aqbench_{os.getpid()}"
    backend = _backend_args()
    cmd = [
        sys.executable, "-m", "bench", "all", "--smoke", *backend,
        "--results-dir", str(results), "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=220)
    finally:
        if "--pg-url" in backend:
            _drop_database(backend[backend.index("--pg-url") + 1])
            _drop_queue_keys(backend[backend.index("--broker-url") + 1], env["BENCH_QUEUE"])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    for name in BENCHMARKS:
        data = json.loads((results / f"{name}.json").read_text())
        assert data["backends"], name
        for backend_name, result in data["backends"].items():
            assert "error" not in result, (name, backend_name, result)
        assert (results / f"{name}.png").stat().st_size > 1000, name
    assert "dispatch" in (results / "summary.md").read_text()
    # The peers ran next to the app, and on PostgreSQL the round trips were counted.
    on_pg = "--pg-url" in backend
    peers = ["celery_post", "celery_session", *(["procrastinate"] if on_pg else [])]
    for name, measured in (("callbacks", "per_callback"), ("dispatch", "per_create")):
        result = next(iter(json.loads((results / f"{name}.json").read_text())["backends"].values()))
        assert set(peers) <= set(result["kinds"]), (name, result["kinds"])
        if on_pg:
            # Counted (a batch of callbacks shares its statements: below 1 per callback).
            assert result["round_trips"]["app"][measured] > 0, (name, result["round_trips"])
