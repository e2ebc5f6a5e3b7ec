"""The benchmarks' Celery app (current and default) and the floor task.

``bench.ping`` is the dispatch floor: a trivial task whose body sends its start time to the
benchmark process over UDP. ``worker_ready`` writes ``BENCH_READY_FILE`` so the harness knows
when a worker consumes.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

app = Celery("asyncqueue_bench", set_as_current=True)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["asyncqueue_django"])
app.set_default()

_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


@app.task(name="bench.ping", ignore_result=True)
def ping(port: int, key: str) -> None:
    """The floor: report when the body starts (wall clock, shared by all local processes)."""
    started = time.time()
    _sock.sendto(f"{key} {started!r}".encode(), ("127.0.0.1", port))


@worker_ready.connect
def _write_ready_file(**_kwargs: Any) -> None:
    path = os.environ.get("BENCH_READY_FILE")
    if path:
        Path(path).write_text(str(os.getpid()))
