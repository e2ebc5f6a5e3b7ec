"""The peers of ``callbacks`` and ``dispatch``: what a user would run instead of the app,
measured in the same run, against the same target, broker, database and worker pool.

- ``celery_post``: a bare Celery task doing ``requests.post(url, json=payload, timeout=30)``
  (what most Django users write; no durable state), ``bench.celery_app.post``;
- ``celery_session``: the same with one ``requests.Session`` per worker thread;
- ``procrastinate``: a durable PostgreSQL job queue (``bench.procrastinate_app``) whose task
  does the same ``requests.post``; its own worker process with the same concurrency. On the
  pg backend only (procrastinate has no SQLite backend).

The two Celery peers run in the same Celery worker as the app's tasks (same pool, concurrency,
prefetch and queue). Every ratio is the app's figure divided by the peer's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench import harness

PEERS = ("celery_post", "celery_session", "procrastinate")
LABELS = {
    "app": "asyncqueue_django",
    "celery_post": "Celery task + requests.post",
    "celery_session": "Celery task + per-thread Session",
    "procrastinate": "procrastinate + requests.post",
    "celery_noop": "Celery no-op task (floor)",
    "raw_session": "raw requests.Session loop (floor)",
    "ping": "bare Celery delay() → body (floor)",
}
SHORT = {
    "app": "app",
    "celery_post": "celery+post",
    "celery_session": "celery+Session",
    "procrastinate": "procrastinate",
    "celery_noop": "celery no-op",
    "raw_session": "raw Session",
    "ping": "celery ping",
}


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--peers",
        default=",".join(PEERS),
        help="comma list of the peers of callbacks and dispatch, default all: "
        + ", ".join(PEERS)
        + " (procrastinate on the pg backend only); empty for none",
    )


def wanted(ctx: harness.Context) -> list[str]:
    names = [p.strip() for p in (ctx.args.peers or "").split(",") if p.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise SystemExit(f"unknown peers {unknown} (known: {', '.join(PEERS)})")
    if "procrastinate" in names and ctx.backend.name != "pg":
        ctx.say("procrastinate skipped: it needs PostgreSQL (no SQLite backend)")
        names.remove("procrastinate")
    if "procrastinate" in names:
        try:
            import procrastinate  # noqa: F401
        except ImportError:
            ctx.say("procrastinate skipped: not installed (it is in the bench extra)")
            names.remove("procrastinate")
    return names


class ProcrastinateWorker:
    """``python -m bench.procrastinate_app`` on the benchmark's queue, stopped by its pid."""

    def __init__(self, log_dir: Path, *, concurrency: int, env: dict[str, str] | None = None):
        self.concurrency = concurrency
        self.env = env or {}
        tag = uuid.uuid4().hex[:8]
        self.log_path = log_dir / f"procrastinate-{tag}.log"
        self.ready_path = log_dir / f"procrastinate-{tag}.ready"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ProcrastinateWorker:
        cmd = [
            sys.executable, "-m", "bench.procrastinate_app", harness.QUEUE,
            str(self.concurrency), str(self.ready_path),
        ]  # fmt: skip
        env = {**os.environ, **self.env}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=harness.ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while not self.ready_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                harness._stop_process(self.proc, grace=2)
                raise RuntimeError(
                    f"procrastinate worker did not start:\n{self.log_path.read_text()[-3000:]}"
                )
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        harness._stop_process(self.proc, grace=3)
        self.proc = None


class ProcrastinateProducer:
    """Defers ``bench_post`` jobs from the benchmark process (a synchronous connector)."""

    def __init__(self, database_url: str) -> None:
        from bench import procrastinate_app

        self.database_url = database_url
        procrastinate_app.ensure_schema(database_url)
        self.app = procrastinate_app.sync_app(database_url)

    def __enter__(self) -> ProcrastinateProducer:
        self.app.open()
        self.deferrer = self.app.configure_task(name="bench_post", queue=harness.QUEUE)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.app.close()

    def defer(self, url: str, payload: Any) -> None:
        self.deferrer.defer(url=url, payload=payload)

    def batch(self, url: str, payload: Any, count: int) -> None:
        """``count`` jobs in one statement (the burst of the callbacks benchmark)."""
        self.deferrer.batch_defer(*({"url": url, "payload": payload} for _ in range(count)))

    def pending(self) -> int:
        """Jobs of the benchmark queue not finished yet (todo or doing)."""
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s "
                "AND status IN ('todo', 'doing')",
                (harness.QUEUE,),
            ).fetchone()
        return int(row[0]) if row else 0
