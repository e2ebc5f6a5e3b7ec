from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient
from werkzeug import Request, Response

import tests.celery_app  # noqa: F401  (the tests' app is current from the first publish on)
from asyncqueue_django import services
from asyncqueue_django.models import Team

pytest_plugins = ["tests.worker", "tests.peers"]


class DrainingHTTPServer(HTTPServer):
    """The session's local HTTP server, counting the requests it is still answering.

    The server outlives each test; a handler that is still running when its test ends (a slow
    target whose client gave up, a worker's call finishing late) would otherwise append its
    request to the next test's log. `drain` waits for those before the log is cleared."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight = 0
        self._idle = threading.Condition()

    def application(self, request: Request) -> Response:
        with self._idle:
            self._in_flight += 1
        try:
            return super().application(request)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def drain(self, timeout: float = 15) -> None:
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout):
                pending = self._in_flight
                raise AssertionError(f"{pending} request(s) still in flight after {timeout}s")

    def fresh(self) -> None:
        """Wait for the requests still being answered, then forget every handler and log entry."""
        self.drain()
        self.clear()


@pytest.fixture(scope="session")
def make_httpserver() -> Iterator[HTTPServer]:
    server = DrainingHTTPServer(
        host=HTTPServer.DEFAULT_LISTEN_HOST, port=HTTPServer.DEFAULT_LISTEN_PORT
    )
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def httpserver(make_httpserver: DrainingHTTPServer) -> Iterator[HTTPServer]:
    """The shared server, its log holding this test's requests only (see `DrainingHTTPServer`)."""
    make_httpserver.fresh()
    yield make_httpserver
    make_httpserver.fresh()


@pytest.fixture
def team(db: Any) -> Team:
    return services.get_or_create_team("acme")[0]


@pytest.fixture
def api_key(team: Team) -> str:
    return services.create_api_key(team, "tests").raw_key


@pytest.fixture
def client(api_key: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return c


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Rate-limit counters live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()


def _retry_flush_on_deadlock() -> None:
    """A transactional test's teardown TRUNCATEs every table while the session's Celery worker
    may be running a beat sweep; PostgreSQL can then pick the TRUNCATE as a deadlock victim.
    That is a property of the test harness, not of the code under test: retry the flush."""
    import time

    from django.core.management.base import CommandError
    from django.db import OperationalError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def is_deadlock(exc: BaseException | None) -> bool:
        # flush wraps the database's error in a CommandError ("couldn't be flushed").
        while exc is not None:
            if isinstance(exc, OperationalError) and "deadlock" in str(exc):
                return True
            exc = exc.__cause__ or exc.__context__
        return False

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                return original(self)
            except (OperationalError, CommandError) as exc:
                if not is_deadlock(exc) or attempt == 4:
                    raise
                time.sleep(0.2)

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[method-assign]


_retry_flush_on_deadlock()
