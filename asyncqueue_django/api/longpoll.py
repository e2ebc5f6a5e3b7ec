"""Long polling without a database connection per waiting request.

Each web process runs at most one watcher thread. Waiting requests register the task id and the
status they saw, then block on an event; the watcher reads the status of *every* watched task
in one primary-key query every ``INTERVAL`` seconds and wakes the requests whose task changed.
So N concurrent long polls cost one query per interval and one database connection per
process, not N of each. The thread exits (closing its connection) once nobody waits.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field

from django.db import DatabaseError, connection

from asyncqueue_django.models import Task

logger = logging.getLogger(__name__)

INTERVAL = 0.2  # seconds between checks: a change is seen within this (goal: ~0.25 s)
IDLE_EXIT = 5.0  # seconds with nobody waiting before the watcher thread exits


@dataclass(eq=False)
class _Waiter:
    task_id: uuid.UUID
    seen: str
    changed: threading.Event = field(default_factory=threading.Event)


class StatusWatcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[uuid.UUID, set[_Waiter]] = {}
        self._thread: threading.Thread | None = None

    def wait(self, task_id: uuid.UUID, seen: str, timeout: float) -> None:
        """Block until the task's status differs from ``seen`` (or the row is gone), or until
        ``timeout`` seconds have passed."""
        waiter = _Waiter(task_id, seen)
        with self._lock:
            self._waiters.setdefault(task_id, set()).add(waiter)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="asyncqueue-longpoll", daemon=True
                )
                self._thread.start()
        try:
            waiter.changed.wait(timeout)
        finally:
            with self._lock:
                waiters = self._waiters.get(task_id)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[task_id]

    def _run(self) -> None:
        idle = 0.0
        stop = threading.Event()
        try:
            while True:
                with self._lock:
                    watched = {k: set(v) for k, v in self._waiters.items()}
                    if not watched and idle >= IDLE_EXIT:
                        self._thread = None
                        return
                if watched:
                    idle = 0.0
                    self._check(watched)
                else:
                    idle += INTERVAL
                stop.wait(INTERVAL)
        finally:
            connection.close()

    def _check(self, watched: dict[uuid.UUID, set[_Waiter]]) -> None:
        try:
            current = dict(
                Task.objects.filter(pk__in=list(watched)).order_by().values_list("pk", "status")
            )
        except DatabaseError:
            logger.warning("Long-poll watcher could not read task statuses", exc_info=True)
            connection.close()  # reconnect on the next tick
            return
        for task_id, waiters in watched.items():
            status = current.get(task_id)
            for waiter in waiters:
                if status != waiter.seen:  # changed, or the row is gone
                    waiter.changed.set()


watcher = StatusWatcher()
