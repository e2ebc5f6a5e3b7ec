"""The procrastinate peer: a durable PostgreSQL job queue doing the same POST as the app.

A procrastinate app on the benchmark's own PostgreSQL database (its tables next to the app's,
created by :func:`ensure_schema`), one task ``bench_post(url, payload)`` doing
``requests.post(url, json=payload, timeout=30)``, like the bare Celery peer. Jobs are kept
after they finish (``delete_jobs="never"``, the default), as the app keeps its task rows.

Its worker (``python -m bench.procrastinate_app QUEUE CONCURRENCY READY_FILE``) is one asyncio
process running up to CONCURRENCY jobs at once; procrastinate runs a synchronous task in the
event loop's default thread pool, sized here to CONCURRENCY threads (Python's default is
``min(32, cpus + 4)``), so x8 means eight threads as in the Celery worker's threads pool. It
wakes on PostgreSQL ``LISTEN/NOTIFY`` (polling every 5 s as a fallback). No Django here.

PostgreSQL only: procrastinate has no SQLite backend, so the embedded backend has no such peer.
"""

from __future__ import annotations

import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import procrastinate
import requests

POST_TIMEOUT = 30  # the app's default per-request timeout


def post(url: str, payload: Any) -> None:
    requests.post(url, json=payload, timeout=POST_TIMEOUT).raise_for_status()


def make_app(connector: Any) -> procrastinate.App:
    """An app with the one task; the worker's connector is async, the producer's sync."""
    app = procrastinate.App(connector=connector)
    app.task(name="bench_post")(post)
    return app


def sync_app(database_url: str) -> procrastinate.App:
    """The producer's side (the benchmark process), not yet open: ``with app.open(): …``."""
    return make_app(procrastinate.SyncPsycopgConnector(conninfo=database_url))


def ensure_schema(database_url: str) -> None:
    """Create procrastinate's tables once per database; empty its jobs otherwise."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if row and row[0]:
            conn.execute("TRUNCATE procrastinate_jobs CASCADE")
            return
    with sync_app(database_url).open() as producer:
        producer.schema_manager.apply_schema()


async def _work(queue: str, concurrency: int, ready_file: str) -> None:
    app = make_app(procrastinate.PsycopgConnector(conninfo=os.environ["DATABASE_URL"]))
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=concurrency))
    async with app.open_async():
        Path(ready_file).write_text(str(os.getpid()))
        await app.run_worker_async(queues=[queue], concurrency=concurrency, name="bench", wait=True)


def main() -> None:
    queue, concurrency, ready_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    asyncio.run(_work(queue, concurrency, ready_file))


if __name__ == "__main__":
    main()
