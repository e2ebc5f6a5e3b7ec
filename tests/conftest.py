from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

import tests.celery_app  # noqa: F401  (the tests' app is current from the first publish on)
from asyncqueue_django import services
from asyncqueue_django.models import Team

pytest_plugins = ["tests.worker", "tests.peers"]


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
