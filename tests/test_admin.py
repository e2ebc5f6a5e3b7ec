"""The admin as the operators' dashboard: lists, filters, search, read-only pages,
every action through the services with its effect in the database, refusals as messages, the
complete/fail-with-a-result flow, API keys shown once, webhook secret rotation, the failed and
timed-out view, and query counts that do not grow with the page.

Plain ``db`` tests: nothing commits, so no Celery message is ever sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from asyncqueue_django import services, tokens
from asyncqueue_django.admin import TaskAdmin
from asyncqueue_django.exceptions import InvalidTransition, TaskNotFound
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import ApiKey, Attempt, Queue, Task, Team, WebhookDelivery
from asyncqueue_django.services import TaskSpec
from asyncqueue_django.values import FlowControl

TASKS = "/admin/asyncqueue/task/"
DEAD = "/admin/asyncqueue/deadtask/"
TEAMS = "/admin/asyncqueue/team/"
KEYS = "/admin/asyncqueue/apikey/"
HOOK = "http://127.0.0.1:9/hook"
TARGET = "http://callbacks.example.test:8080/run?job=1"

pytestmark = pytest.mark.django_db


# ---------------------------------------------------------------- making tasks in each status


def ok(status: int = 200) -> CallResult:
    return CallResult(status_code=status, body=b"{}", duration_ms=5)


def make(team: Team, *, url: str | None = HOOK, **spec: Any) -> Task:
    spec.setdefault("target_url", TARGET)
    return services.create_task(team, TaskSpec(on_complete_url=url, **spec)).task


def run(task: Task, call: CallResult) -> str | None:
    claimed = services.claim_task(task.pk, "w1")
    assert claimed is not None
    return services.finish_attempt(claimed, call, worker="w1")


def pending(team: Team, **spec: Any) -> Task:
    return make(team, **spec)


def delayed(team: Team, **spec: Any) -> Task:
    return make(team, delay_until=timezone.now() + timedelta(hours=1), **spec)


def waiting(team: Team, max_wait: int = 3600, **spec: Any) -> Task:
    task = make(team, wait_for_signal=True, max_wait_time=max_wait, **spec)
    assert run(task, ok()) == "waiting"
    task.refresh_from_db()
    return task


def failed(team: Team, attempts: int = 1, **spec: Any) -> Task:
    """A failed task with ``attempts`` attempts (and one webhook event per failure)."""
    task = make(team, max_retries=0, **spec)
    assert run(task, ok(500)) == "failed"
    for _ in range(attempts - 1):
        services.retry_task(team, task.pk)
        assert run(task, ok(500)) == "failed"
    task.refresh_from_db()
    return task


def timed_out(team: Team, **spec: Any) -> Task:
    task = waiting(team, max_wait=1, **spec)
    services.expire_overdue(now=timezone.now() + timedelta(seconds=5))
    task.refresh_from_db()
    assert task.status == "timeout"
    return task


def completed(team: Team, **spec: Any) -> Task:
    task = make(team, **spec)
    assert run(task, ok()) == "completed"
    task.refresh_from_db()
    return task


def status(task: Task) -> str:
    return Task.objects.values_list("status", flat=True).get(pk=task.pk)


def events(task: Task) -> list[str]:
    return list(WebhookDelivery.objects.filter(task=task).values_list("event", flat=True))


def queries(fn: Callable[[], Any]) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    return len(ctx.captured_queries), result


def act(client: Client, url: str, action: str, objs: list[Any], **extra: Any) -> Any:
    data = {"action": action, "_selected_action": [str(o.pk) for o in objs], **extra}
    return client.post(url, data)


def page_messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def followed_messages(client: Client, response: Any) -> list[str]:
    assert response.status_code == 302, response.content[:500]
    return page_messages(client.get(response["Location"]))


def linear_cost(cost: Callable[[int], int]) -> int:
    """The cost per item of ``cost(n)``, asserted to be the same from 1 to 2 and 2 to 4 items
    (no work hidden per page or growing per row beyond one item's own service calls)."""
    one, two, four = cost(1), cost(2), cost(4)
    per_item = two - one
    assert four - two == 2 * per_item, (one, two, four)
    return per_item


@pytest.fixture
def other_team(db: Any) -> Team:
    return services.get_or_create_team("globex")[0]


# ---------------------------------------------------------------- the task list


def test_task_list_shows_the_columns(admin_client: Client, team: Team) -> None:
    task = failed(team, attempts=2, queue="emails")
    body = admin_client.get(TASKS).content.decode()
    assert str(task.pk) in body
    assert "callbacks.example.test" in body  # the target host and path, not the query
    assert "job=1" not in body
    assert "emails" in body
    assert "acme" in body
    for header in ("Id", "Status", "Queue", "Team", "Target", "Attempts", "Created", "Finished"):
        assert f">{header}<" in body or f">{header}</a>" in body, header
    cells = re.findall(r'<td class="field-attempts">(\d+)</td>', body)
    assert cells == ["2"]


def test_task_list_filters(admin_client: Client, team: Team, other_team: Team) -> None:
    p = pending(team, queue="emails")
    w = waiting(other_team)
    d = delayed(team)

    def listed(query: str) -> set[str]:
        response = admin_client.get(TASKS + "?" + query)
        assert response.status_code == 200
        return {str(t.pk) for t in response.context["cl"].result_list}

    assert listed("status__exact=delayed") == {str(d.pk)}
    assert listed("queue=emails") == {str(p.pk)}
    assert listed(f"team__id__exact={other_team.pk}") == {str(w.pk)}
    assert listed("wait_for_signal__exact=1") == {str(w.pk)}
    assert listed("wait_for_signal__exact=0") == {str(p.pk), str(d.pk)}
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    today = {"created_at__gte": midnight, "created_at__lt": midnight + timedelta(days=1)}
    assert listed(urlencode(today)) == {str(p.pk), str(w.pk), str(d.pk)}
    tomorrow = {"created_at__gte": midnight + timedelta(days=1)}
    assert listed(urlencode(tomorrow)) == set()
    body = admin_client.get(TASKS).content.decode()
    assert "By waitForSignal" in body
    assert ">Delayed</a>" in body  # tests/test_browser.py clicks this filter


def test_task_search(admin_client: Client, team: Team) -> None:
    by_url = pending(team, target_url="http://orders.example.test/ship")
    by_meta = pending(team, metadata={"customer": "Zebulon-42", "n": 1})
    by_key = services.create_task(
        team, TaskSpec(target_url=TARGET), idempotency_key="order-7781"
    ).task
    other = pending(team)

    def found(term: str) -> set[str]:
        response = admin_client.get(TASKS, {"q": term})
        assert response.status_code == 200
        return {str(t.pk) for t in response.context["cl"].result_list}

    assert found(str(other.pk)) == {str(other.pk)}
    assert found(str(other.pk).upper()) == {str(other.pk)}  # a UUID, however it is written
    assert found("orders.example") == {str(by_url.pk)}
    assert found("order-7781") == {str(by_key.pk)}
    assert found("order-77") == set()  # the key matches exactly
    assert found("zebulon-42") == {str(by_meta.pk)}  # metadata text, case-insensitive
    assert found("customer") == {str(by_meta.pk)}
    assert found("no such thing") == set()
    assert found("%") == set()  # LIKE wildcards are literal
    assert found("   ") == {str(t.pk) for t in (by_url, by_meta, by_key, other)}


def test_task_list_has_no_add_or_delete(admin_client: Client, team: Team) -> None:
    pending(team)
    body = admin_client.get(TASKS).content.decode()
    assert "delete_selected" not in body
    assert admin_client.get(TASKS + "add/").status_code == 403


def test_task_list_queries_do_not_grow_with_the_page(admin_client: Client, team: Team) -> None:
    """5 or 50 tasks, each with attempts and webhook events: the same queries."""

    def page(n: int) -> int:
        Task.objects.all().delete()
        for _ in range(n):
            failed(team, attempts=2)
        assert Attempt.objects.count() == 2 * n
        assert WebhookDelivery.objects.count() == 2 * n
        admin_client.get(TASKS)  # warm up the session
        count, response = queries(lambda: admin_client.get(TASKS))
        assert len(response.context["cl"].result_list) == n
        return count

    assert page(5) == page(50)


def test_task_list_never_counts_the_whole_table(admin_client: Client, team: Team) -> None:
    pending(team)
    admin_client.get(TASKS)
    _, response = queries(lambda: admin_client.get(TASKS + "?status__exact=pending"))
    assert response.context["cl"].show_full_result_count is False
    assert response.context["cl"].full_result_count is None


def test_task_list_does_not_load_large_columns(admin_client: Client, team: Team) -> None:
    pending(team, payload={"big": "x" * 10_000})
    admin_client.get(TASKS)
    with CaptureQueriesContext(connection) as ctx:
        admin_client.get(TASKS)
    listing = [
        q["sql"] for q in ctx.captured_queries if '"asyncqueue_task"."target_url"' in q["sql"]
    ]
    assert listing
    assert all('"asyncqueue_task"."payload"' not in sql for sql in listing)


# ---------------------------------------------------------------- the task page


def test_task_page_is_read_only_and_complete(admin_client: Client, team: Team) -> None:
    task = failed(
        team,
        headers={"Authorization": "Bearer target-secret-123", "X-Trace": "t-9"},
        metadata={"orderId": "o-1"},
        payload={"videoId": "v-7"},
    )
    Task.objects.filter(pk=task.pk).update(signal_token_digest=tokens.digest("aq_sig_x"))
    response = admin_client.get(f"{TASKS}{task.pk}/change/")
    assert response.status_code == 200
    body = response.content.decode()
    assert tokens.digest("aq_sig_x") not in body  # never the token's digest
    assert "target-secret-123" not in body  # secret-looking headers are redacted
    assert "[redacted]" in body
    assert "t-9" in body
    assert "o-1" in body
    assert "v-7" in body
    assert "HTTP 500" in body  # the attempt inline
    assert "task.failed" in body  # the webhook delivery inline
    assert 'name="_save"' not in body  # nothing to save
    assert "<textarea" not in body
    assert "<select" not in body


def test_every_task_field_is_on_the_page_or_deliberately_hidden() -> None:
    shown = set(TaskAdmin.get_readonly_fields(None, None))  # type: ignore[arg-type]
    for field in Task._meta.fields:
        name = field.name
        assert (
            name in shown
            or name in TaskAdmin.hidden_fields
            or TaskAdmin.displayed_as.get(name) in shown
        ), name
    assert not shown & TaskAdmin.hidden_fields


def test_task_page_queries_do_not_grow_with_attempts(admin_client: Client, team: Team) -> None:
    """1 or 10 attempts (and as many webhook events): the same queries."""

    def page(attempts: int) -> int:
        task = failed(team, attempts=attempts)
        assert task.attempts.count() == attempts
        assert task.webhook_deliveries.count() == attempts
        url = f"{TASKS}{task.pk}/change/"
        admin_client.get(url)
        count, response = queries(lambda: admin_client.get(url))
        assert response.status_code == 200
        return count

    assert page(1) == page(10)


# ---------------------------------------------------------------- cancel, retry, re-send


def test_cancel_action(admin_client: Client, team: Team) -> None:
    p, d, w, done = pending(team), delayed(team), waiting(team), completed(team)
    response = act(admin_client, TASKS, "cancel_tasks", [p, d, w, done])
    shown = followed_messages(admin_client, response)
    assert "Cancelled 3 task(s)." in shown  # tests/test_browser.py expects this wording
    assert f"Refused 1 task(s): {done.pk}: Cannot cancel this task: it has completed" in shown
    assert [status(t) for t in (p, d, w, done)] == ["cancelled"] * 3 + ["completed"]
    # Through the service: each cancel made its terminal event.
    assert events(p) == events(d) == events(w) == ["task.cancelled"]
    assert events(done) == ["task.completed"]


def test_cancel_action_cost_is_per_task(admin_client: Client, team: Team) -> None:
    def cost(n: int) -> int:
        tasks = [pending(team) for _ in range(n)]
        count, response = queries(lambda: act(admin_client, TASKS, "cancel_tasks", tasks))
        assert response.status_code == 302
        assert all(status(t) == "cancelled" for t in tasks)
        return count

    # savepoint, guarded UPDATE, re-read, the event's INSERT, release
    assert linear_cost(cost) == 5


def test_retry_action(admin_client: Client, team: Team) -> None:
    f, t, p = failed(team), timed_out(team), pending(team)
    response = act(admin_client, TASKS, "retry_tasks", [f, t, p])
    shown = followed_messages(admin_client, response)
    assert "Re-queued 2 task(s)." in shown
    assert f"Refused 1 task(s): {p.pk}: Cannot retry this task: it is pending" in shown
    assert [status(x) for x in (f, t, p)] == ["pending", "pending", "pending"]
    f.refresh_from_db()
    assert (f.retry_count, f.error, f.completed_at) == (0, "", None)


def test_retry_action_cost_is_per_task(admin_client: Client, team: Team) -> None:
    def cost(n: int) -> int:
        tasks = [failed(team) for _ in range(n)]
        count, response = queries(lambda: act(admin_client, TASKS, "retry_tasks", tasks))
        assert response.status_code == 302
        assert all(status(t) == "pending" for t in tasks)
        return count

    # savepoint, locked read of the status it leaves, guarded UPDATE, re-read, the metrics
    # offset of the finish it leaves, release (the message goes out on commit)
    assert linear_cost(cost) == 6


def test_resend_webhook_action(admin_client: Client, team: Team) -> None:
    f, plain = failed(team, attempts=2), completed(team, url=None)
    WebhookDelivery.objects.filter(task=f).update(status="delivered")
    latest = WebhookDelivery.objects.filter(task=f).order_by("-created_at", "-id").first()
    assert latest is not None
    response = act(admin_client, TASKS, "resend_webhooks", [f, plain])
    shown = followed_messages(admin_client, response)
    assert "Re-sent the webhook of 1 task(s)." in shown
    assert f"Refused 1 task(s): {plain.pk}: Task has no webhook event" in shown
    statuses = dict(WebhookDelivery.objects.filter(task=f).values_list("pk", "status"))
    assert statuses.pop(latest.pk) == "pending"  # only the newest event is re-sent
    assert set(statuses.values()) == {"delivered"}


def test_resend_webhook_action_cost_is_per_task(admin_client: Client, team: Team) -> None:
    def cost(n: int) -> int:
        tasks = [failed(team) for _ in range(n)]
        WebhookDelivery.objects.update(status="delivered")
        count, response = queries(lambda: act(admin_client, TASKS, "resend_webhooks", tasks))
        assert response.status_code == 302
        assert not WebhookDelivery.objects.filter(task__in=tasks).exclude(status="pending")
        return count

    # the task, its newest event, savepoint, guarded UPDATE, release, re-read
    assert linear_cost(cost) == 6


def test_refusal_messages_are_bounded(admin_client: Client, team: Team) -> None:
    tasks = [completed(team) for _ in range(23)]
    shown = followed_messages(admin_client, act(admin_client, TASKS, "cancel_tasks", tasks))
    assert len(shown) == 1  # nothing was done: only the refusals
    assert shown[0].startswith("Refused 23 task(s): ")
    assert shown[0].endswith("; and 3 more")


# ---------------------------------------------------------------- complete / fail a waiting task


def test_complete_action_asks_for_a_result_first(admin_client: Client, team: Team) -> None:
    w, p = waiting(team), pending(team)
    response = act(admin_client, TASKS, "complete_waiting_tasks", [w, p])
    assert response.status_code == 200
    body = response.content.decode()
    assert "Result (JSON)" in body
    assert 'name="error"' not in body  # completing takes no error
    assert str(w.pk) in body
    assert str(p.pk) in body
    assert "not waiting" in body
    assert "Complete 1 task(s)" in body
    assert status(w) == "waiting"  # nothing applied yet


def test_complete_action_applies_the_result(admin_client: Client, team: Team) -> None:
    w, p = waiting(team), pending(team)
    result = {"approved": True, "by": "operator", "scores": [1, 2.5]}
    response = act(
        admin_client,
        TASKS,
        "complete_waiting_tasks",
        [w, p],
        apply="yes",
        result=json.dumps(result),
    )
    shown = followed_messages(admin_client, response)
    assert "Completed 1 waiting task(s)." in shown
    assert f"Refused 1 waiting task(s): {p.pk}: Cannot complete this task: it is pending" in shown
    w.refresh_from_db()
    assert (w.status, w.result, w.error) == ("completed", result, "")
    assert w.signal_received_at is not None
    assert w.completed_at is not None
    assert events(w) == ["task.completed"]  # the terminal event, as for a signal
    assert status(p) == "pending"


def test_complete_action_with_an_empty_result_stores_null(admin_client: Client, team: Team) -> None:
    w = waiting(team)
    act(admin_client, TASKS, "complete_waiting_tasks", [w], apply="yes", result="  ")
    w.refresh_from_db()
    assert (w.status, w.result) == ("completed", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"approved": tru}', "Not valid JSON"),
        ("{'single': 'quotes'}", "Not valid JSON"),
        ('{"n": NaN}', "numbers must be finite"),
        ('{"s": "nul\\u0000"}', "NUL"),
        ("[" * 100 + "]" * 100, "nested deeper"),
    ],
)
def test_complete_action_refuses_bad_json(
    admin_client: Client, team: Team, text: str, message: str
) -> None:
    w = waiting(team)
    response = act(admin_client, TASKS, "complete_waiting_tasks", [w], apply="yes", result=text)
    assert response.status_code == 200  # the form again, with the error; never a 500
    assert message in response.content.decode()
    assert response.context["form"].errors["result"]
    assert status(w) == "waiting"
    assert events(w) == []


def test_complete_action_refuses_a_result_over_the_body_limit(
    admin_client: Client, team: Team, settings: Any
) -> None:
    settings.ASYNCQUEUE = {**settings.ASYNCQUEUE, "MAX_BODY_BYTES": 1024}
    w = waiting(team)
    text = json.dumps({"blob": "x" * 2000})
    response = act(admin_client, TASKS, "complete_waiting_tasks", [w], apply="yes", result=text)
    assert response.status_code == 200
    assert "at most 1024 bytes" in response.content.decode()
    assert status(w) == "waiting"


def test_fail_action_requires_an_error(admin_client: Client, team: Team) -> None:
    w = waiting(team)
    first = act(admin_client, TASKS, "fail_waiting_tasks", [w])
    assert first.status_code == 200
    assert 'name="error"' in first.content.decode()
    response = act(admin_client, TASKS, "fail_waiting_tasks", [w], apply="yes", result="")
    assert response.status_code == 200
    assert response.context["form"].errors["error"]
    assert status(w) == "waiting"
    response = act(
        admin_client,
        TASKS,
        "fail_waiting_tasks",
        [w],
        apply="yes",
        result='{"reason": "fraud"}',
        error="Rejected by the operator",
    )
    assert "Failed 1 waiting task(s)." in followed_messages(admin_client, response)
    w.refresh_from_db()
    assert (w.status, w.result, w.error) == (
        "failed",
        {"reason": "fraud"},
        "Rejected by the operator",
    )
    assert events(w) == ["task.failed"]


def test_resolve_actions_need_a_waiting_task(admin_client: Client, team: Team) -> None:
    p = pending(team)
    response = act(admin_client, TASKS, "complete_waiting_tasks", [p])
    assert "None of the selected tasks is waiting for a signal or polling." in followed_messages(
        admin_client, response
    )
    assert status(p) == "pending"


def test_resolve_action_cost_is_per_task(admin_client: Client, team: Team) -> None:
    def cost(n: int) -> int:
        tasks = [waiting(team) for _ in range(n)]
        count, response = queries(
            lambda: act(
                admin_client, TASKS, "complete_waiting_tasks", tasks, apply="yes", result="1"
            )
        )
        assert response.status_code == 302
        assert all(status(t) == "completed" for t in tasks)
        return count

    # the task, savepoint, guarded UPDATE, the event's INSERT, re-read, release
    assert linear_cost(cost) == 6


def test_resolve_waiting_task_service(team: Team, other_team: Team) -> None:
    w = waiting(team)
    with pytest.raises(TaskNotFound):
        services.resolve_waiting_task(other_team, w.pk, "completed")
    with pytest.raises(ValueError, match="completed or failed"):
        services.resolve_waiting_task(team, w.pk, "cancelled")
    task = services.resolve_waiting_task(team, w.pk, "failed", result=[1], error="no")
    assert (task.status, task.result, task.error) == ("failed", [1], "no")
    with pytest.raises(InvalidTransition, match="Cannot complete this task: it has failed"):
        services.resolve_waiting_task(team, w.pk, "completed")
    assert events(w) == ["task.failed"]


def test_resolve_waiting_task_past_its_deadline_times_it_out(team: Team) -> None:
    w = waiting(team, max_wait=1)
    later = timezone.now() + timedelta(seconds=5)
    with pytest.raises(InvalidTransition, match="it has timed out"):
        services.resolve_waiting_task(team, w.pk, "completed", result=1, now=later)
    assert status(w) == "timeout"
    assert events(w) == ["task.timeout"]


def test_a_token_signal_after_an_operator_resolution_is_refused(team: Team) -> None:
    created = services.create_task(
        team, TaskSpec(target_url=TARGET, wait_for_signal=True, max_wait_time=3600)
    )
    assert run(created.task, ok()) == "waiting"
    services.resolve_waiting_task(team, created.task.pk, "completed", result={"by": "admin"})
    assert created.signal_token is not None
    with pytest.raises(InvalidTransition):
        services.signal_task(created.signal_token, "failed", error="late")
    assert status(created.task) == "completed"


# ---------------------------------------------------------------- failed and timed-out tasks


def test_dead_task_view_lists_only_failed_and_timed_out(admin_client: Client, team: Team) -> None:
    f, t = failed(team), timed_out(team)
    others = [pending(team), delayed(team), waiting(team), completed(team)]
    others.append(pending(team))
    services.cancel_task(team, others[-1].pk)
    response = admin_client.get(DEAD)
    assert response.status_code == 200
    assert {x.pk for x in response.context["cl"].result_list} == {f.pk, t.pk}
    body = response.content.decode()
    assert "HTTP 500" in body  # the error column
    assert "Failed and timed-out tasks" in body
    only_timeouts = admin_client.get(DEAD + "?status__exact=timeout")
    assert [x.pk for x in only_timeouts.context["cl"].result_list] == [t.pk]
    # The page of a listed task works (inlines through the proxy), others are not found here.
    assert admin_client.get(f"{DEAD}{f.pk}/change/").status_code == 200
    assert admin_client.get(f"{DEAD}{others[0].pk}/change/").status_code == 302


def test_dead_task_view_retries_in_bulk(admin_client: Client, team: Team) -> None:
    dead = [failed(team), timed_out(team), failed(team)]
    p = pending(team)
    response = act(admin_client, DEAD, "retry_tasks", [*dead, p])
    shown = followed_messages(admin_client, response)
    assert "Re-queued 3 task(s)." in shown  # p is not in this list, so not even selected
    assert all(status(t) == "pending" for t in dead)
    assert list(admin_client.get(DEAD).context["cl"].result_list) == []
    body = admin_client.get(DEAD).content.decode()
    assert 'value="retry_tasks"' in body
    assert 'value="cancel_tasks"' not in body


def test_dead_task_view_queries_do_not_grow_with_the_page(admin_client: Client, team: Team) -> None:
    def page(n: int) -> int:
        Task.objects.all().delete()
        for _ in range(n):
            failed(team, attempts=2)
        admin_client.get(DEAD)
        count, response = queries(lambda: admin_client.get(DEAD))
        assert len(response.context["cl"].result_list) == n
        return count

    assert page(5) == page(50)


# ---------------------------------------------------------------- permissions


def test_view_only_staff_see_pages_but_no_actions(team: Team) -> None:
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="asyncqueue", codename__startswith="view_"
        )
    )
    browser = Client()
    browser.force_login(user)
    p = pending(team)
    body = browser.get(TASKS).content.decode()
    assert str(p.pk) in body
    assert "cancel_tasks" not in body
    response = act(browser, TASKS, "cancel_tasks", [p])
    assert status(p) == "pending"  # an action it may not run is not run
    assert response.status_code in (200, 302)
    assert "rotate_webhook_secrets" not in browser.get(TEAMS).content.decode()
    assert "revoke_keys" not in browser.get(KEYS).content.decode()
    assert browser.get(KEYS + "add/").status_code == 403


# ---------------------------------------------------------------- teams


def test_team_pages_never_show_secrets(admin_client: Client, team: Team) -> None:
    services.create_api_key(team, "ci")
    body = admin_client.get(TEAMS).content.decode()
    assert "acme" in body
    assert team.webhook_secret not in body
    page = admin_client.get(f"{TEAMS}{team.pk}/change/").content.decode()
    assert team.webhook_secret not in page
    assert "whsec_" not in page
    assert ">set<" in page or "set</div>" in page
    assert "ci" in page  # the key inline, by prefix and name


def test_rotate_webhook_secret_action(admin_client: Client, team: Team, other_team: Team) -> None:
    old = team.webhook_secret
    untouched = other_team.webhook_secret
    before = timezone.now()
    response = act(admin_client, TEAMS, "rotate_webhook_secrets", [team])
    shown = followed_messages(admin_client, response)
    assert any(m.startswith("Rotated the webhook secret of 1 team(s): acme.") for m in shown)
    team.refresh_from_db()
    other_team.refresh_from_db()
    assert team.webhook_secret != old
    assert team.previous_webhook_secret == old  # through the service: the overlap is kept
    assert team.previous_secret_expires_at is not None
    assert team.previous_secret_expires_at > before
    assert other_team.webhook_secret == untouched
    for text in shown:
        assert team.webhook_secret not in text
        assert old not in text
    page = admin_client.get(f"{TEAMS}{team.pk}/change/").content.decode()
    assert "the previous secret also signs until" in page
    assert team.webhook_secret not in page
    assert old not in page


def test_rotate_action_cost_is_per_team(admin_client: Client) -> None:
    made = iter(range(100))

    def cost(n: int) -> int:
        teams = [services.get_or_create_team(f"t{next(made)}")[0] for _ in range(n)]
        count, response = queries(lambda: act(admin_client, TEAMS, "rotate_webhook_secrets", teams))
        assert response.status_code == 302
        return count

    # savepoint, SELECT … FOR UPDATE, UPDATE, release, refresh
    assert linear_cost(cost) == 5


def test_team_list_queries_do_not_grow(admin_client: Client) -> None:
    def page(n: int) -> int:
        Team.objects.all().delete()
        for i in range(n):
            t = services.get_or_create_team(f"team-{i}")[0]
            services.create_api_key(t, "a")
            services.revoke_api_key(services.create_api_key(t, "b").api_key)
        admin_client.get(TEAMS)
        count, response = queries(lambda: admin_client.get(TEAMS))
        rows = response.context["cl"].result_list
        assert len(rows) == n
        assert {r.active_key_count for r in rows} == {1}
        return count

    assert page(2) == page(20)


def test_team_page_queries_do_not_grow_with_keys(admin_client: Client) -> None:
    def page(n: int) -> int:
        t = services.get_or_create_team(f"keys-{n}")[0]
        for _ in range(n):
            services.create_api_key(t, "k")
        url = f"{TEAMS}{t.pk}/change/"
        admin_client.get(url)
        count, response = queries(lambda: admin_client.get(url))
        assert response.status_code == 200
        return count

    assert page(1) == page(10)


def test_add_team_goes_through_the_service(admin_client: Client) -> None:
    response = admin_client.post(TEAMS + "add/", {"name": "initech"})
    assert response.status_code == 302
    team = Team.objects.get(name="initech")
    assert team.webhook_secret.startswith("whsec_")
    duplicate = admin_client.post(TEAMS + "add/", {"name": "initech"})
    assert duplicate.status_code == 200  # the form again: the name is taken
    assert Team.objects.filter(name="initech").count() == 1


# ---------------------------------------------------------------- API keys


def _raw_key(body: str) -> str:
    match = re.search(r'id="asyncqueue-raw-key"[^>]*>([^<]+)<', body)
    assert match, body
    return match.group(1)


def test_api_key_is_shown_exactly_once(admin_client: Client, team: Team) -> None:
    response = admin_client.post(KEYS + "add/", {"team": team.pk, "name": "billing"})
    assert response.status_code == 200  # the answer itself: no redirect, no session
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    raw = _raw_key(body)
    assert body.count(raw) == 1
    key = ApiKey.objects.get(name="billing")
    assert key.digest == tokens.digest(raw)  # issued by the service: only the digest kept
    assert raw.startswith(key.prefix)
    assert key.team == team

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/v1/tasks").status_code == 200

    for url in (f"{KEYS}{key.pk}/change/", KEYS, f"{TEAMS}{team.pk}/change/", "/admin/"):
        page = admin_client.get(url).content.decode()
        assert raw not in page, url
        assert key.prefix in page or url == "/admin/"
    log = LogEntry.objects.get(object_id=str(key.pk))
    assert raw not in log.object_repr
    assert raw not in log.change_message


def test_api_key_add_form_validates(admin_client: Client) -> None:
    response = admin_client.post(KEYS + "add/", {"team": "", "name": "x"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["team"]
    assert not ApiKey.objects.exists()


def test_api_key_page_is_read_only(admin_client: Client, team: Team) -> None:
    key = services.create_api_key(team, "ops").api_key
    page = admin_client.get(f"{KEYS}{key.pk}/change/").content.decode()
    assert key.digest not in page
    assert 'name="_save"' not in page
    assert 'name="name"' not in page
    assert 'name="revoked_at"' not in page


def test_revoke_action(admin_client: Client, team: Team) -> None:
    issued = services.create_api_key(team, "old")
    kept = services.create_api_key(team, "kept")
    response = act(admin_client, KEYS, "revoke_keys", [issued.api_key])
    assert "Revoked 1 key(s)." in followed_messages(admin_client, response)
    assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at is not None
    assert ApiKey.objects.get(pk=kept.api_key.pk).revoked_at is None
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    assert api.get("/v1/tasks").status_code == 401
    again = act(admin_client, KEYS, "revoke_keys", [issued.api_key])
    assert "1 key(s) were already revoked." in followed_messages(admin_client, again)
    revoked = admin_client.get(KEYS + "?state=revoked").context["cl"].result_list
    assert [k.pk for k in revoked] == [issued.api_key.pk]


def test_revoke_action_cost_is_per_key(admin_client: Client, team: Team) -> None:
    def cost(n: int) -> int:
        keys = [services.create_api_key(team, "k").api_key for _ in range(n)]
        count, response = queries(lambda: act(admin_client, KEYS, "revoke_keys", keys))
        assert response.status_code == 302
        return count

    assert linear_cost(cost) == 1  # one guarded UPDATE per key


def test_api_key_list_queries_do_not_grow(admin_client: Client, team: Team) -> None:
    def page(n: int) -> int:
        ApiKey.objects.all().delete()
        for i in range(n):
            t = services.get_or_create_team(f"owner-{i}")[0]
            services.create_api_key(t, "k")
        admin_client.get(KEYS)
        count, response = queries(lambda: admin_client.get(KEYS))
        assert len(response.context["cl"].result_list) == n
        return count

    assert page(3) == page(30)


# ---------------------------------------------------------------- the task page's buttons and
# the list's compact columns


def page_buttons(client: Client, task: Task, base: str = TASKS) -> list[str]:
    body = client.get(f"{base}{task.pk}/change/").content.decode()
    return re.findall(r'<button type="submit" class="aq-page-action">([^<]+)</button>', body)


def do(client: Client, task: Task, name: str, base: str = TASKS, **data: Any) -> Any:
    return client.post(f"{base}{task.pk}/do/{name}/", data)


def test_the_task_page_offers_the_buttons_its_status_allows(
    admin_client: Client, team: Team
) -> None:
    assert page_buttons(admin_client, make(team, delay_until=None)) == ["Cancel"]
    assert page_buttons(admin_client, failed(team)) == ["Retry now", "Re-send webhook"]
    assert page_buttons(admin_client, waiting(team)) == ["Cancel", "Complete…", "Fail…"]
    assert page_buttons(admin_client, failed(team, url=None)) == ["Retry now"]
    assert page_buttons(admin_client, failed(team), DEAD) == ["Retry now", "Re-send webhook"]


def test_a_button_runs_the_action_and_comes_back_to_the_page(
    admin_client: Client, team: Team
) -> None:
    task = make(team)
    response = do(admin_client, task, "cancel_tasks")
    assert response.status_code == 302
    assert response["Location"] == f"{TASKS}{task.pk}/change/"
    assert status(task) == "cancelled"
    assert "Cancelled 1 task(s)." in followed_messages(admin_client, response)
    again = do(admin_client, task, "cancel_tasks")
    assert any("Refused 1 task(s)" in m for m in followed_messages(admin_client, again))

    dead = failed(team)
    assert do(admin_client, dead, "retry_tasks", DEAD).status_code == 302
    assert status(dead) == "pending"


def test_the_complete_button_asks_for_the_result_then_applies_it(
    admin_client: Client, team: Team
) -> None:
    task = waiting(team)
    form = do(admin_client, task, "complete_waiting_tasks")
    assert form.status_code == 200
    assert b'name="result"' in form.content
    applied = do(
        admin_client,
        task,
        "complete_waiting_tasks",
        action="complete_waiting_tasks",
        apply="yes",
        result='{"ok": true}',
    )
    assert applied.status_code == 302
    assert applied["Location"] == f"{TASKS}{task.pk}/change/"
    task.refresh_from_db()
    assert (task.status, task.result) == ("completed", {"ok": True})


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("{pk}/do/cancel_tasks/", 405),  # GET
        ("{pk}/do/delete_selected/", 404),
        ("{pk}/do/nothing/", 404),
        ("not-a-uuid/do/cancel_tasks/", 404),
        ("00000000-0000-0000-0000-000000000000/do/cancel_tasks/", 404),
        ("{pk}/do/%00/", 404),
    ],
)
def test_bad_button_requests_are_refused_cleanly(
    admin_client: Client, team: Team, path: str, expected: int
) -> None:
    task = make(team)
    url = TASKS + path.format(pk=task.pk)
    response = admin_client.get(url) if expected == 405 else admin_client.post(url)
    assert response.status_code == expected
    assert status(task) == "pending"


def test_view_only_staff_get_no_buttons_and_cannot_post_them(team: Team) -> None:
    user = get_user_model().objects.create_user("viewer2", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="asyncqueue", codename="view_task")
    )
    client = Client()
    client.force_login(user)
    task = make(team)
    assert page_buttons(client, task) == []
    assert do(client, task, "cancel_tasks").status_code == 403
    assert status(task) == "pending"


def test_the_list_shows_a_compact_id_host_and_path_and_seconds(
    admin_client: Client, team: Team
) -> None:
    task = failed(team)
    body = admin_client.get(TASKS).content.decode()
    assert f'<code class="aq-id" title="{task.pk}">{task.pk}</code>' in body
    assert 'title="callbacks.example.test:8080/run"' in body
    assert "job=1" not in body
    local = timezone.localtime(task.created_at).strftime("%Y-%m-%d %H:%M:%S")
    assert local in body
    assert "asyncqueue/admin.css" in body


def test_the_task_page_shows_times_to_the_second_and_the_trace_context(
    admin_client: Client, team: Team
) -> None:
    task = services.create_task(
        team,
        TaskSpec(
            target_url=TARGET,
            traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ).task
    body = admin_client.get(f"{TASKS}{task.pk}/change/").content.decode()
    assert timezone.localtime(task.created_at).strftime("%Y-%m-%d %H:%M:%S") in body
    assert "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" in body


# ------------------------------------------------------------------------------ queues

QUEUES_PAGE = "/admin/asyncqueue/queue/"


def test_queue_add_pauses_and_the_actions_resume_and_pause(
    admin_client: Client, team: Team
) -> None:
    response = admin_client.post(QUEUES_PAGE + "add/", {"name": "low", "team": ""})
    assert response.status_code == 302, response.content[:500]
    row = Queue.objects.get(name="low", team=None)
    assert row.paused
    assert "every team" in admin_client.get(QUEUES_PAGE).content.decode()
    messages = followed_messages(
        admin_client, act(admin_client, QUEUES_PAGE, "resume_queues", [row])
    )
    assert messages == ["Resumed 1 queue(s)."]
    assert not Queue.objects.get(pk=row.pk).paused
    act(admin_client, QUEUES_PAGE, "pause_queues", [row])
    assert Queue.objects.get(pk=row.pk).paused


def test_task_page_shows_flow_control(admin_client: Client, team: Team) -> None:
    task = services.create_task(
        team,
        services.TaskSpec(
            target_url="http://127.0.0.1:9/x",
            flow_control=FlowControl("partner-api", parallelism=5),
        ),
    ).task
    body = admin_client.get(f"{TASKS}{task.pk}/change/").content.decode()
    assert "Flow control" in body
    assert "partner-api" in body


def test_queue_add_refuses_a_bad_name_and_pauses_an_existing_row_again(
    admin_client: Client, team: Team
) -> None:
    response = admin_client.post(QUEUES_PAGE + "add/", {"name": "bad name", "team": ""})
    assert response.status_code == 200
    assert "letters, digits" in response.content.decode()
    assert not Queue.objects.exists()
    services.pause_queue(team, "low")
    services.resume_queue(team, "low")
    response = admin_client.post(QUEUES_PAGE + "add/", {"name": "low", "team": str(team.pk)})
    assert response.status_code == 302
    assert Queue.objects.get(team=team, name="low").paused
