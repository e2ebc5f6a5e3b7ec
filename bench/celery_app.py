"""The benchmarks' Celery app (current and default), the floor task and the Celery peers.

``bench.ping`` is the dispatch floor and the callbacks' no-op floor: a trivial task whose body
sends its start time to the benchmark process over UDP. ``bench.post`` and
``bench.post_session`` are the peers a Django user writes by hand instead of the app: a bare
Celery task doing ``requests.post`` (no durable state), and the same with one
``requests.Session`` per worker thread. They run in the same worker as the app's tasks (the
app's ``task_prerun`` hook only acts on ``asyncqueue.*`` tasks). ``worker_ready`` writes
``BENCH_READY_FILE`` so the harness knows when a worker consumes.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import requests
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


# The same per-request timeout as the app's default (TaskSpec.timeout, 30 s).
POST_TIMEOUT = 30


@app.task(name="bench.post", ignore_result=True)
def post(url: str, payload: Any) -> None:
    """Peer: what most Django users write (a new connection per call, no durable state)."""
    requests.post(url, json=payload, timeout=POST_TIMEOUT).raise_for_status()


_local = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


@app.task(name="bench.post_session", ignore_result=True)
def post_session(url: str, payload: Any) -> None:
    """Peer: the same with a per-thread ``requests.Session`` (kept-alive connections)."""
    _session().post(url, json=payload, timeout=POST_TIMEOUT).raise_for_status()


@worker_ready.connect
def _write_ready_file(**_kwargs: Any) -> None:
    path = os.environ.get("BENCH_READY_FILE")
    if path:
        Path(path).write_text(str(os.getpid()))
