"""How many concurrent long polls one deployment holds, and what they cost the database.

``python -m bench.longpoll [--clients 200] [--wait 5] [--workers 2] [--threads 100]``

Starts gunicorn (gthread) on ``bench.wsgi`` against ``DATABASE_URL`` (PostgreSQL), creates one
task that stays pending, then opens ``--clients`` concurrent ``GET /v1/tasks/{id}?wait=N``
requests. While they wait it samples ``pg_stat_activity`` for the benchmark database. Prints how
many finished within N + 1 s (served concurrently), the slowest, and the peak number of
database connections — which stays far below the number of waiting requests, because a long
poll gives its connection back between checks.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--wait", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=100)
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        parser.error("set DATABASE_URL to a PostgreSQL database (it is migrated and used)")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "BENCH_CONN_MAX_AGE": "0"}
    os.environ.update(env)
    import django

    django.setup()
    import requests
    from django.core.management import call_command
    from django.db import connection

    from asyncqueue_django import services
    from asyncqueue_django.services import TaskSpec

    call_command("migrate", verbosity=0)
    team = services.get_or_create_team("longpoll")[0]
    key = services.create_api_key(team, "longpoll").raw_key
    task = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", queue="longpoll-unconsumed")
    ).task
    db_name = connection.settings_dict["NAME"]
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "bench.wsgi",
            "-k",
            "gthread",
            "-w",
            str(args.workers),
            "--threads",
            str(args.threads),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{base}/v1/schema", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        peak = 0
        sampling = True

        def sample() -> None:
            nonlocal peak
            while sampling:
                with connection.cursor() as cur:
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                        "AND pid <> pg_backend_pid()",
                        [db_name],
                    )
                    peak = max(peak, int(cur.fetchone()[0]))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()

        def poll(_: int) -> tuple[int, float]:
            started = time.monotonic()
            r = requests.get(
                f"{base}/v1/tasks/{task.pk}?wait={args.wait}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=args.wait * 10,
            )
            return r.status_code, time.monotonic() - started

        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            results: list[Any] = list(pool.map(poll, range(args.clients)))
        sampling = False
        sampler.join()
    finally:
        server.terminate()
        server.wait(timeout=20)
    ok = [t for code, t in results if code == 200]
    concurrent = sum(1 for t in ok if t <= args.wait + 1)
    capacity = args.workers * args.threads
    print(f"gunicorn gthread {args.workers} workers x {args.threads} threads = {capacity} slots")
    print(
        f"{args.clients} concurrent long polls of {args.wait} s: {len(ok)} answered 200, "
        f"{concurrent} within {args.wait + 1} s, slowest {max(ok):.2f} s"
    )
    print(f"peak database connections during the waits: {peak}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
