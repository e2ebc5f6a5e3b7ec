"""The admin dashboard: it draws what the database holds, its fragment refreshes the page, its
query count does not grow with the data, and no input makes it fail."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from asyncqueue_django import services, stats
from asyncqueue_django.admin import dashboard
from asyncqueue_django.models import Attempt, Task, Team, WebhookDelivery
from asyncqueue_django.values import TaskSpec

URL = "/admin/asyncqueue/dashboard/"
pytestmark = pytest.mark.django_db


def populate(team: Team, n: int = 6) -> None:
    now = timezone.now()
    for i in range(n):
        task = services.create_task(
            team, TaskSpec(target_url="https://example.com/x", queue=("default", "emails")[i % 2])
        ).task
        status = ("completed", "failed", "timeout", "cancelled", "pending", "waiting")[i % 6]
        fields: dict[str, Any] = {"status": status}
        if status in ("completed", "failed", "timeout", "cancelled"):
            fields["completed_at"] = now - timedelta(minutes=i)
        if status == "waiting":
            fields["wait_deadline"] = now + timedelta(minutes=30 + i)
        if status == "pending":
            fields["next_attempt_at"] = now - timedelta(seconds=40)
        Task.objects.filter(pk=task.pk).update(**fields)
        Attempt.objects.create(
            task=task,
            number=1,
            started_at=now - timedelta(minutes=i),
            duration_ms=20 * (i + 1),
            outcome="succeeded",
        )
        if i % 3 == 0:
            WebhookDelivery.objects.create(
                task=task, event="task.completed", url="https://example.com/h", next_attempt_at=now
            )


def test_the_app_index_links_to_it(admin_client: Client) -> None:
    body = admin_client.get("/admin/asyncqueue/").content.decode()
    assert f'href="{URL}"' in body
    assert ">Dashboard<" in body


def test_it_draws_the_data(admin_client: Client, team: Team) -> None:
    populate(team, 12)
    response = admin_client.get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    assert "no-store" in response["Cache-Control"]
    for section in ("aq-throughput", "aq-success", "aq-latency", "aq-queues", "aq-waiting"):
        assert f'id="{section}"' in body
    assert body.count("<svg") >= 5
    assert len(re.findall(r'<rect class="aq-bar"', body)) > 5
    assert re.search(r'<polyline class="aq-line" points="[\d., ]+"', body)
    assert "emails" in body
    assert "default" in body
    # No CDN, no chart library: the only script is the inline refresh.
    assert "cdn" not in body.lower()
    assert not re.search(r'<script[^>]+src="https?:', body)
    context = response.context
    assert context["created_total"] == 12
    assert context["finished_total"] == 8
    assert context["success_ratio"] == pytest.approx(100 * 2 / 6)
    assert context["waiting_total"] == 2
    assert context["backlog"].pending == 4
    assert context["attempts_total"] == 12


def test_the_fragment_is_the_charts_alone(admin_client: Client, team: Team) -> None:
    populate(team)
    body = admin_client.get(URL, {"partial": "1"}).content.decode()
    assert 'id="aq-throughput"' in body
    assert "<html" not in body
    assert "<script" not in body


@pytest.mark.parametrize(
    "query",
    [
        {"hours": "x"},
        {"hours": "-3"},
        {"hours": "100000"},
        {"hours": "1e9"},
        {"hours": ""},
        {"hours": "\x00"},
        {"partial": "yes", "hours": "6"},
        {"hours": ["1", "24"]},
        {"other": "1"},
    ],
)
def test_no_query_makes_it_fail(admin_client: Client, team: Team, query: Any) -> None:
    populate(team)
    assert admin_client.get(URL, query).status_code == 200


@pytest.mark.parametrize("hours", dashboard.WINDOWS)
def test_every_window_has_at_most_the_slots_it_can_draw(admin_client: Client, hours: int) -> None:
    response = admin_client.get(URL, {"hours": hours})
    assert response.status_code == 200
    assert response.context["hours"] == hours


def test_its_query_count_does_not_grow_with_the_data(
    admin_client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    def count() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(URL, {"partial": "1"}).status_code == 200
        return len(queries)

    empty = count()
    populate(team, 30)
    assert count() == empty
    # The window (3), queues (3), waiting and webhooks (1 each), plus the session and user.
    assert empty <= 10


def test_staff_who_may_view_tasks_see_it_and_others_do_not(team: Team) -> None:
    users = get_user_model().objects
    viewer = users.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_task"))
    nobody = users.create_user("nobody", password="x", is_staff=True)
    client = Client()
    client.force_login(viewer)
    assert client.get(URL).status_code == 200
    client.force_login(nobody)
    assert client.get(URL).status_code == 403
    anonymous = Client().get(URL)
    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]


def test_it_offers_no_add_change_or_delete(admin_client: Client) -> None:
    assert admin_client.get(URL + "add/").status_code == 404
    assert admin_client.post(URL, {"action": "delete_selected"}).status_code in (200, 405)


def test_quantiles_interpolate_inside_buckets() -> None:
    assert stats.quantile({}, 0.5) is None
    assert stats.quantile({10: 10}, 0.5) == pytest.approx(5.0)
    assert stats.quantile({10: 5, 25: 5}, 0.9) == pytest.approx(22.0)
    assert stats.quantile({None: 3}, 0.5) == float(stats.DURATION_BUCKETS_MS[-1])


def test_charts_escape_their_labels() -> None:
    svg = dashboard.hbar_chart("<t>", [("<script>", [dashboard.Series("<b>", "#000", [1])])])
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    empty = dashboard.bar_chart("x", [], [])
    assert empty.startswith("<svg")
