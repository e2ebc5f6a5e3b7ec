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
