"""A real Celery worker process for end-to-end tests, on the broker and database of the run.

The worker is a subprocess (``celery -A tests.celery_app worker``) that opens the *test*
database: its name is handed over in ``ASYNCQUEUE_TEST_DB_NAME`` once pytest-django has
created it. Tests that use it need committed data: mark them ``transactional_db``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
QUEUES = "default,high,low"


def child_env(db_name: str, **extra: str) -> dict[str, str]:
    """The environment of a Celery process the tests start: the test database, the run's
    broker, this checkout's code."""
    return {
        **os.environ,
        "ASYNCQUEUE_TEST_DB_NAME": db_name,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **extra,
    }


class Worker:
    def __init__(
        self,
        log_path: Path,
        db_name: str,
        extra_env: dict[str, str] | None = None,
        *,
        queues: str = QUEUES,
        beat: bool = True,
        concurrency: int = 4,
        pool: str = "threads",
    ):
        self.log_path = log_path
        self.db_name = db_name
        self.extra_env = extra_env or {}
        self.queues = queues
        self.beat = beat
        self.concurrency = concurrency
        self.pool = pool
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        env = child_env(self.db_name, **self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            *(  # embedded beat runs the sweeps, as in the quick start
                ["--beat", "--schedule", str(self.log_path.with_suffix(".beat"))]
                if self.beat
                else []
            ),
            "-Q",
            self.queues,
            "--pool",
            self.pool,
            "--concurrency",
            str(self.concurrency),
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
            "-n",
            f"test-{uuid.uuid4().hex[:8]}@%h",
        ]
        self.log_path.touch()
        start_offset = self.log_path.stat().st_size
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[start_offset:]
            if b" ready." in text:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Celery worker did not start:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-flight, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def purge_broker() -> None:
    from tests.celery_app import app

    with app.connection_for_write() as conn:
        for queue in QUEUES.split(","):
            # A queue that does not exist yet has nothing to purge.
            with contextlib.suppress(Exception):
                conn.default_channel.queue_purge(queue)


@pytest.fixture(scope="session")
def worker_factory(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Worker]]:
    """Start extra workers (e.g. to kill one); all are stopped at the end of the session."""
    from django.db import connection

    db_name = str(connection.settings_dict["NAME"])
    started: list[Worker] = []
    logs = tmp_path_factory.mktemp("workers")

    def make(
        queues: str = QUEUES,
        beat: bool = True,
        concurrency: int = 4,
        pool: str = "threads",
        **extra_env: str,
    ) -> Worker:
        worker = Worker(
            logs / f"worker-{len(started)}.log",
            db_name,
            extra_env,
            queues=queues,
            beat=beat,
            concurrency=concurrency,
            pool=pool,
        )
        worker.start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def celery_worker(worker_factory: Callable[..., Worker]) -> Worker:
    """One shared worker for the session's end-to-end tests."""
    purge_broker()
    return worker_factory()


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)


@contextmanager
def publishing_to(url: str, transport: str | None = None) -> Iterator[None]:
    """Make this process publish its Celery messages to ``url`` for a while.

    Celery reads ``CELERY_BROKER_URL`` from the environment before its own configuration, so
    both are switched, and the cached connection and producer pools are dropped.
    """
    from asyncqueue_django import broker
    from tests.celery_app import app

    saved_env = os.environ.get("CELERY_BROKER_URL")
    saved_conf = (app.conf.broker_url, app.conf.broker_transport)

    def reset_pools() -> None:
        app._pool = None
        app.amqp._producer_pool = None
        broker._driver_type.cache_clear()

    os.environ["CELERY_BROKER_URL"] = url
    app.conf.broker_url, app.conf.broker_transport = url, transport
    reset_pools()
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env
        app.conf.broker_url, app.conf.broker_transport = saved_conf
        reset_pools()


def broker_unreachable() -> Any:
    """Publish to a port where nothing listens, as if the broker were down."""
    return publishing_to("redis://127.0.0.1:1/0")
