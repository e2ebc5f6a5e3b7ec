"""Per-team rate limits with X-RateLimit-* headers, and 429 + Retry-After."""

from __future__ import annotations

import time

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from asyncqueue_django import services
from asyncqueue_django.api.throttles import parse_rate
from asyncqueue_django.models import Team


@pytest.mark.parametrize(
    ("rate", "expected"),
    [("600/min", (600, 60)), ("5/s", (5, 1)), ("10/hour", (10, 3600)), ("1/day", (1, 86400))],
)
def test_parse_rate(rate: str, expected: tuple[int, int]) -> None:
    assert parse_rate(rate) == expected


def test_headers_count_down_then_429_with_retry_after(client: APIClient) -> None:
    with override_settings(ASYNCQUEUE={"RATE_LIMIT": "3/hour"}):
        responses = [client.get("/v1/tasks") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert {r["X-RateLimit-Limit"] for r in responses} == {"3"}
    reset = int(responses[0]["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 3600
    limited = responses[3]
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 3600


def test_limits_are_per_team(client: APIClient, team: Team) -> None:
    other = services.create_api_key(services.get_or_create_team("other")[0]).raw_key
    other_client = APIClient()
    other_client.credentials(HTTP_X_API_KEY=other)
    with override_settings(ASYNCQUEUE={"RATE_LIMIT": "1/hour"}):
        assert client.get("/v1/tasks").status_code == 200
        assert client.get("/v1/tasks").status_code == 429
        assert other_client.get("/v1/tasks").status_code == 200


def test_two_keys_of_one_team_share_its_limit(client: APIClient, team: Team) -> None:
    second = APIClient()
    second.credentials(HTTP_X_API_KEY=services.create_api_key(team).raw_key)
    with override_settings(ASYNCQUEUE={"RATE_LIMIT": "1/hour"}):
        assert client.get("/v1/tasks").status_code == 200
        assert second.get("/v1/tasks").status_code == 429


def test_null_disables_the_limit(client: APIClient) -> None:
    with override_settings(ASYNCQUEUE={"RATE_LIMIT": None}):
        response = client.get("/v1/tasks")
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response


def test_unauthenticated_requests_are_not_counted_against_a_team(anon: APIClient) -> None:
    response = anon.get("/v1/tasks")
    assert response.status_code == 401
    assert "X-RateLimit-Limit" not in response
