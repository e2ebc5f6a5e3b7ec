from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from asyncqueue_django import services
from asyncqueue_django.models import Team

pytest_plugins = ["tests.worker"]


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

    from django.db import OperationalError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                return original(self)
            except OperationalError as exc:
                if "deadlock" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2)

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[method-assign]


_retry_flush_on_deadlock()
