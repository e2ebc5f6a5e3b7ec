"""``GET /metrics``: access, the series and their values against the database, counters that
survive pruning and retries, the per-process cache, a bounded number of queries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from asyncqueue_django import metrics, services
from asyncqueue_django.models import Attempt, Task, Team, WebhookAttempt, WebhookDelivery
from asyncqueue_django.values import TaskSpec

TOKEN = "metrics-token-0123456789abcdef"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _metrics_settings(settings: Any) -> Iterator[None]:
    settings.ASYNCQUEUE = {**settings.ASYNCQUEUE, "METRICS_TOKEN": TOKEN}
    metrics.clear_cache()
    yield
    metrics.clear_cache()


def scrape(token: str = TOKEN) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    metrics.clear_cache()
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def make_task(team: Team, queue: str = "default", **fields: Any) -> Task:
    task = services.create_task(team, TaskSpec(target_url="https://example.com/x", queue=queue))
    if fields:
        Task.objects.filter(pk=task.task.pk).update(**fields)
    return Task.objects.get(pk=task.task.pk)


def finish(task: Task, status: str, ago: float = 0) -> None:
    Task.objects.filter(pk=task.pk).update(
        status=status, completed_at=timezone.now() - timedelta(seconds=ago)
    )


# -- access ------------------------------------------------------------------------------------


def test_without_credentials_it_is_401_with_a_bearer_challenge() -> None:
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-token-wrong-token",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        f"bearer {TOKEN}x",
        "Bearer \x00\x01",
        "Bearer " + "é" * 40,
        "x" * 10_000,
    ],
)
def test_a_wrong_token_is_401_never_500(header: str) -> None:
    assert Client().get("/metrics", HTTP_AUTHORIZATION=header).status_code == 401


def test_the_token_is_accepted_in_any_case_of_the_scheme() -> None:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")


def test_without_a_token_setting_no_bearer_is_accepted(settings: Any) -> None:
    settings.ASYNCQUEUE = {**settings.ASYNCQUEUE, "METRICS_TOKEN": None}
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer None").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_staff_users_may_read_it_and_other_users_may_not() -> None:
    users = get_user_model().objects
    staff = users.create_user("ops", password="x", is_staff=True)
    other = users.create_user("someone", password="x")
    client = Client()
    client.force_login(other)
    assert client.get("/metrics").status_code == 403
    client.force_login(staff)
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics/").status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_only_get_and_head(method: str) -> None:
    response = getattr(Client(), method)("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405
    assert Client().head("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_query_strings_are_ignored() -> None:
    response = Client().get(
        "/metrics?name[]=x&format=%00&" + "a=1&" * 200, HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )
    assert response.status_code == 200


# -- series ------------------------------------------------------------------------------------


def test_every_family_has_help_and_follows_the_naming_guide() -> None:
    metrics.clear_cache()
    text = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    families = list(text_string_to_metric_families(text))
    names = {f.name for f in families}
    assert {
        "asyncqueue_tasks_created",
        "asyncqueue_tasks_finished",
        "asyncqueue_queue_tasks",
        "asyncqueue_queue_oldest_pending_age_seconds",
        "asyncqueue_attempt_duration_seconds",
        "asyncqueue_webhook_deliveries",
        "asyncqueue_webhook_backlog",
        "asyncqueue_webhook_oldest_pending_age_seconds",
    } <= names
    for family in families:
        assert family.name.startswith("asyncqueue_")
        assert family.documentation, family.name
        if family.type == "counter":
            assert f"# TYPE {family.name}_total counter" in text
    assert "# TYPE asyncqueue_attempt_duration_seconds histogram" in text


def test_values_match_the_database(team: Team) -> None:
    now = timezone.now()
    pending = make_task(team, "default")
    make_task(team, "default", status="delayed", next_attempt_at=now + timedelta(hours=1))
    make_task(team, "emails", status="waiting", wait_deadline=now + timedelta(minutes=5))
    make_task(team, "emails", status="processing", lease_expires_at=now + timedelta(minutes=5))
    for status, queue in [("completed", "default"), ("completed", "default"), ("failed", "emails")]:
        finish(make_task(team, queue), status)
    Task.objects.filter(pk=pending.pk).update(next_attempt_at=now - timedelta(seconds=90))
    done = Task.objects.filter(status="completed").first()
    assert done is not None
    for number, ms in enumerate([5, 80, 1200, 400_000], start=1):
        Attempt.objects.create(
            task=done, number=number, started_at=now, duration_ms=ms, outcome="succeeded"
        )
    Attempt.objects.create(task=done, number=9, started_at=now, outcome="worker_lost")
    delivery = WebhookDelivery.objects.create(
        task=done, event="task.completed", url="https://example.com/h", next_attempt_at=now
    )
    for number, code in enumerate([200, 410, 503, None, 201], start=1):
        WebhookAttempt.objects.create(
            delivery=delivery, number=number, started_at=now, status_code=code
        )

    s = scrape()
    assert value(s, "asyncqueue_tasks_created_total", queue="default") == 4
    assert value(s, "asyncqueue_tasks_created_total", queue="emails") == 3
    assert value(s, "asyncqueue_tasks_finished_total", queue="default", status="completed") == 2
    assert value(s, "asyncqueue_tasks_finished_total", queue="emails", status="failed") == 1
    assert value(s, "asyncqueue_tasks_finished_total", queue="emails", status="timeout") == 0
    assert value(s, "asyncqueue_queue_tasks", queue="default", status="pending") == 1
    assert value(s, "asyncqueue_queue_tasks", queue="default", status="delayed") == 1
    assert value(s, "asyncqueue_queue_tasks", queue="emails", status="waiting") == 1
    assert value(s, "asyncqueue_queue_tasks", queue="emails", status="processing") == 1
    age = value(s, "asyncqueue_queue_oldest_pending_age_seconds", queue="default")
    assert 90 <= age < 150
    assert value(s, "asyncqueue_queue_oldest_pending_age_seconds", queue="emails") == 0
    assert value(s, "asyncqueue_attempt_duration_seconds_count") == 4
    assert value(s, "asyncqueue_attempt_duration_seconds_sum") == pytest.approx(401.285)
    assert value(s, "asyncqueue_attempt_duration_seconds_bucket", le="0.01") == 1
    assert value(s, "asyncqueue_attempt_duration_seconds_bucket", le="0.1") == 2
    assert value(s, "asyncqueue_attempt_duration_seconds_bucket", le="2.5") == 3
    assert value(s, "asyncqueue_attempt_duration_seconds_bucket", le="300.0") == 3
    assert value(s, "asyncqueue_attempt_duration_seconds_bucket", le="+Inf") == 4
    for outcome, n in [("delivered", 2), ("gone", 1), ("rejected", 1), ("error", 1)]:
        assert value(s, "asyncqueue_webhook_deliveries_total", outcome=outcome) == n
    assert value(s, "asyncqueue_webhook_backlog") == 1
    assert value(s, "asyncqueue_webhook_oldest_pending_age_seconds") >= 0


def test_counters_never_go_down_when_tasks_are_pruned(team: Team) -> None:
    now = timezone.now()
    old = [make_task(team, q) for q in ("default", "default", "emails")]
    for task in old:
        finish(task, "completed", ago=10 * 86400)
    finish(old[2], "failed", ago=10 * 86400)
    Attempt.objects.create(
        task=old[0], number=1, started_at=now, duration_ms=30, outcome="succeeded"
    )
    delivery = WebhookDelivery.objects.create(
        task=old[0], event="task.completed", url="https://example.com/h", status="delivered"
    )
    WebhookAttempt.objects.create(delivery=delivery, number=1, started_at=now, status_code=204)
    make_task(team, "default")
    before = scrape()

    assert services.prune_finished(now - timedelta(days=1), batch_size=2) == 3
    assert Task.objects.count() == 1
    after = scrape()
    counters = [
        key
        for key in before
        if key[0].endswith(("_total", "_bucket", "_count", "_sum"))
        and key[0] != "asyncqueue_metrics_collect_duration_seconds"
    ]
    assert counters
    for key in counters:
        assert after[key] == before[key], key
    # A second prune with nothing to delete changes nothing either.
    services.prune_finished(now - timedelta(days=1), batch_size=2)
    assert all(scrape()[key] == before[key] for key in counters)


def test_a_retried_task_counts_each_finish(team: Team) -> None:
    task = make_task(team, "default")
    finish(task, "failed")
    assert value(scrape(), "asyncqueue_tasks_finished_total", queue="default", status="failed") == 1
    services.retry_task(team, task.pk)
    s = scrape()
    assert value(s, "asyncqueue_tasks_finished_total", queue="default", status="failed") == 1
    assert value(s, "asyncqueue_queue_tasks", queue="default", status="pending") == 1
    finish(task, "failed")
    s = scrape()
    assert value(s, "asyncqueue_tasks_finished_total", queue="default", status="failed") == 2
    assert value(s, "asyncqueue_tasks_created_total", queue="default") == 1


def test_the_page_is_cached_per_process_for_the_setting(team: Team, settings: Any) -> None:
    settings.ASYNCQUEUE = {**settings.ASYNCQUEUE, "METRICS_CACHE_SECONDS": 60}
    headers = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    first = Client().get("/metrics", **headers).content
    make_task(team, "default")
    assert Client().get("/metrics", **headers).content == first
    settings.ASYNCQUEUE = {**settings.ASYNCQUEUE, "METRICS_CACHE_SECONDS": 0}
    fresh = parse(Client().get("/metrics", **headers).content.decode())
    assert value(fresh, "asyncqueue_tasks_created_total", queue="default") == 1


def test_a_scrape_costs_a_fixed_number_of_queries(
    team: Team, django_assert_max_num_queries: Any
) -> None:
    for i in range(30):
        task = make_task(team, f"q{i % 5}")
        if i % 2:
            finish(task, "completed")
    metrics.clear_cache()
    with django_assert_max_num_queries(9):  # the paused-queues gauge is the ninth
        assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_paused_queues_are_a_gauge(team: Team) -> None:
    from asyncqueue_django import services

    other, _ = services.get_or_create_team("other team")
    services.pause_queue(None, "emails")
    services.pause_queue(team, "default")
    services.pause_queue(other, "default")
    services.pause_queue(team, "low")
    services.resume_queue(team, "low")
    s = scrape()
    assert value(s, "asyncqueue_queue_paused", queue="emails", scope="all") == 1
    assert value(s, "asyncqueue_queue_paused", queue="default", scope="team") == 2
    assert ("asyncqueue_queue_paused", (("queue", "low"), ("scope", "team"))) not in s
