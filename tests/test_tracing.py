"""W3C Trace Context: parsing, storing it with the task at create, sending it on every call the
task makes (callbacks and webhooks), and OpenTelemetry spans when the package is there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient

from asyncqueue_django import outbound, services, tasks, tracing
from asyncqueue_django.models import Schedule, Task, Team, WebhookDelivery
from asyncqueue_django.values import TaskSpec

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TRACEPARENT, TRACEPARENT),
        (f"  {TRACEPARENT} ", TRACEPARENT),
        (f"00-{TRACE_ID}-{PARENT}-00", f"00-{TRACE_ID}-{PARENT}-00"),
        # A later version may carry more fields; only version 00's are kept.
        (f"cc-{TRACE_ID}-{PARENT}-01-what-the-future-holds", TRACEPARENT),
        (f"01-{TRACE_ID}-{PARENT}-01", TRACEPARENT),
    ],
)
def test_valid_traceparents(value: str, expected: str) -> None:
    assert tracing.parse_traceparent(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        f"ff-{TRACE_ID}-{PARENT}-01",  # version ff is invalid
        f"00-{TRACE_ID}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE_ID.upper()}-{PARENT}-01",  # upper case
        f"00-{TRACE_ID[:-1]}-{PARENT}-01",
        f"00-{TRACE_ID}-{PARENT}-1",
        f"00_{TRACE_ID}_{PARENT}_01",
        f"00-{TRACE_ID}-{PARENT}-0g",
        "00-" + "a" * 2000,
        f"00-{TRACE_ID}-{PARENT}-01\r\nX-Injected: 1",
        f"00-{TRACE_ID}-{PARENT}-01\x00",
    ],
)
def test_invalid_traceparents_are_dropped(value: str | None) -> None:
    assert tracing.parse_traceparent(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TRACESTATE, TRACESTATE),
        ("congo=t61rcWkgMzE , rojo=00f067aa0ba902b7", TRACESTATE),
        ("a=1,,b=2", "a=1,b=2"),
        ("tenant@vendor=x", "tenant@vendor=x"),
        ("", ""),
        (None, ""),
        ("a=1,a=2", ""),  # a key may appear once
        ("A=1", ""),  # keys are lower case
        ("a=", ""),
        ("a", ""),
        ("a=b=c", ""),
        ("a=x\x00", ""),
        ("a=é", ""),
        (",".join(f"k{i}=v" for i in range(33)), ""),  # at most 32 members
        ("a=" + "x" * 600, ""),
    ],
)
def test_tracestate(value: str | None, expected: str) -> None:
    assert tracing.parse_tracestate(value) == expected


def test_tracestate_without_a_valid_traceparent_is_dropped() -> None:
    assert tracing.parse({"tracestate": TRACESTATE}) is None
    assert tracing.parse({"traceparent": "bad", "tracestate": TRACESTATE}) is None
    assert tracing.parse({"Traceparent": TRACEPARENT, "TraceState": "A=1"}) == (
        tracing.TraceContext(TRACEPARENT, "")
    )


# -- the create request ------------------------------------------------------------------------


def create(client: APIClient, **headers: str) -> Task:
    response = client.post(
        "/v1/tasks",
        {"targetUrl": "https://example.com/hook", "payload": {"a": 1}},
        format="json",
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
    )
    assert response.status_code in (200, 201), response.content
    return Task.objects.get(pk=response.json()["task"]["id"])


def test_the_create_requests_trace_context_is_stored(client: APIClient) -> None:
    task = create(client, traceparent=TRACEPARENT, tracestate=TRACESTATE)
    assert (task.traceparent, task.tracestate) == (TRACEPARENT, TRACESTATE)


def test_a_batch_create_stores_the_trace_context_on_every_task(client: APIClient) -> None:
    response = client.post(
        "/v1/tasks/batch",
        {"tasks": [{"targetUrl": f"https://example.com/{i}"} for i in range(3)]},
        format="json",
        HTTP_TRACEPARENT=TRACEPARENT,
        HTTP_TRACESTATE=TRACESTATE,
    )
    assert response.status_code == 201, response.content
    ids = [item["task"]["id"] for item in response.json()["tasks"]]
    stored = set(Task.objects.filter(pk__in=ids).values_list("traceparent", "tracestate"))
    assert stored == {(TRACEPARENT, TRACESTATE)}


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "nonsense", "tracestate": TRACESTATE},
        {"traceparent": f"ff-{TRACE_ID}-{PARENT}-01"},
        {"traceparent": "00-" + "z" * 51},
        {"tracestate": TRACESTATE},
        {"traceparent": "x" * 5000},
    ],
)
def test_a_bad_trace_context_is_dropped_not_refused(client: APIClient, headers: Any) -> None:
    task = create(client, **headers)
    assert (task.traceparent, task.tracestate) == ("", "")


def test_a_bad_tracestate_is_dropped_and_the_traceparent_kept(client: APIClient) -> None:
    task = create(client, traceparent=TRACEPARENT, tracestate="a=1,a=2")
    assert (task.traceparent, task.tracestate) == (TRACEPARENT, "")


def test_an_idempotent_replay_with_another_span_is_the_same_request(client: APIClient) -> None:
    first = create(client, traceparent=TRACEPARENT, idempotency_key="k-1")
    again = create(client, traceparent=f"00-{TRACE_ID}-{'1' * 16}-01", idempotency_key="k-1")
    assert again.pk == first.pk


# -- every call of the task --------------------------------------------------------------------


def traced_task(team: Team, **spec: Any) -> Task:
    spec.setdefault("target_url", "https://example.com/hook")
    created = services.create_task(
        team, TaskSpec(traceparent=TRACEPARENT, tracestate=TRACESTATE, **spec)
    )
    return created.task


def test_the_callback_carries_the_trace_context(team: Team) -> None:
    headers, _ = outbound.build_callback(traced_task(team))
    assert headers["traceparent"] == TRACEPARENT
    assert headers["tracestate"] == TRACESTATE


def test_a_task_without_trace_context_sends_none(team: Team) -> None:
    task = services.create_task(team, TaskSpec(target_url="https://example.com/x")).task
    headers, _ = outbound.build_callback(task)
    assert not {"traceparent", "tracestate"} & {h.lower() for h in headers}


def test_a_traceparent_header_of_the_task_itself_wins(team: Team) -> None:
    own = f"00-{'a' * 32}-{'b' * 16}-01"
    headers, _ = outbound.build_callback(traced_task(team, headers={"TraceParent": own}))
    assert headers["TraceParent"] == own
    assert "traceparent" not in headers


def test_the_webhook_carries_the_trace_context(team: Team) -> None:
    task = traced_task(team, on_complete_url="https://example.com/done")
    services.cancel_task(team, task.pk)
    delivery = WebhookDelivery.objects.select_related("task__team").get(task=task)
    headers = outbound.build_webhook(delivery, "{}")
    assert headers["traceparent"] == TRACEPARENT
    assert headers["tracestate"] == TRACESTATE


def test_a_worker_sends_it_to_the_target(team: Team, httpserver: HTTPServer) -> None:
    seen: list[dict[str, str]] = []

    def handler(request: Any) -> Any:
        from werkzeug import Response

        seen.append(dict(request.headers))
        return Response(json.dumps({"ok": True}), content_type="application/json")

    httpserver.expect_request("/hook").respond_with_handler(handler)
    task = traced_task(team, target_url=httpserver.url_for("/hook"))
    assert tasks.execute_task(str(task.pk)) == "completed"
    assert seen[0]["Traceparent"] == TRACEPARENT
    assert seen[0]["Tracestate"] == TRACESTATE


# -- OpenTelemetry -----------------------------------------------------------------------------


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer_provider", provider)
    yield exporter
    provider.shutdown()


def test_with_opentelemetry_create_claim_call_and_finish_are_spans(
    client: APIClient, spans: Any, httpserver: HTTPServer
) -> None:
    seen: list[str] = []

    def handler(request: Any) -> Any:
        from werkzeug import Response

        seen.append(request.headers["traceparent"])
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/hook").respond_with_handler(handler)
    response = client.post(
        "/v1/tasks",
        {"targetUrl": httpserver.url_for("/hook")},
        format="json",
        HTTP_TRACEPARENT=TRACEPARENT,
        HTTP_TRACESTATE=TRACESTATE,
    )
    assert response.status_code == 201
    task = Task.objects.get(pk=response.json()["task"]["id"])
    assert tasks.execute_task(str(task.pk)) == "completed"

    by_name = {span.name: span for span in spans.get_finished_spans()}
    assert set(by_name) >= {
        "asyncqueue.create",
        "asyncqueue.claim",
        "asyncqueue.call",
        "asyncqueue.finish",
    }
    create_span = by_name["asyncqueue.create"]
    assert f"{create_span.context.trace_id:032x}" == TRACE_ID
    assert f"{create_span.parent.span_id:016x}" == PARENT  # the client's span
    # The task keeps the create span as the parent of what follows.
    assert task.traceparent == f"00-{TRACE_ID}-{create_span.context.span_id:016x}-01"
    assert task.tracestate == TRACESTATE
    for name in ("asyncqueue.claim", "asyncqueue.call", "asyncqueue.finish"):
        span = by_name[name]
        assert f"{span.context.trace_id:032x}" == TRACE_ID
        assert span.parent.span_id == create_span.context.span_id
    # The target sees the call span as its parent.
    call = by_name["asyncqueue.call"]
    assert seen == [f"00-{TRACE_ID}-{call.context.span_id:016x}-01"]


def test_without_a_trace_context_the_worker_spans_start_a_trace(team: Team, spans: Any) -> None:
    task = services.create_task(team, TaskSpec(target_url="http://127.0.0.1:9/x")).task
    tasks.execute_task(str(task.pk))
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert {"asyncqueue.claim", "asyncqueue.call", "asyncqueue.finish"} <= set(by_name)
    assert by_name["asyncqueue.call"].parent is None
    headers, _ = outbound.build_callback(Task.objects.get(pk=task.pk))
    assert "traceparent" not in headers


def test_without_opentelemetry_spans_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_otel", lambda: None)
    with tracing.span("x", TRACEPARENT, TRACESTATE):
        pass
    tracing.record("x", TRACEPARENT, "", start_ns=tracing.now_ns(), task_id="t")
    assert tracing.outbound_headers(TRACEPARENT, TRACESTATE) == {
        "traceparent": TRACEPARENT,
        "tracestate": TRACESTATE,
    }


def test_a_schedule_tick_is_a_span_and_its_task_carries_it(team: Team, spans: Any) -> None:
    schedule = services.create_schedule(team, "* * * * *", "UTC", {"targetUrl": "http://x.test/"})
    Schedule.objects.filter(pk=schedule.pk).update(active_since=timezone.now() - timedelta(hours=1))
    task_id = tasks.run_schedule(str(schedule.pk))
    assert task_id is not None
    (tick,) = [s for s in spans.get_finished_spans() if s.name == "asyncqueue.schedule"]
    task = Task.objects.get(pk=task_id)
    # The tick's span is the parent of what the task does (the flags are the SDK's).
    assert task.traceparent[:52] == f"00-{tick.context.trace_id:032x}-{tick.context.span_id:016x}"


def test_without_a_span_a_tick_stores_no_trace_context(team: Team) -> None:
    assert tracing.current_headers() == {}
    schedule = services.create_schedule(team, "* * * * *", "UTC", {"targetUrl": "http://x.test/"})
    Schedule.objects.filter(pk=schedule.pk).update(active_since=timezone.now() - timedelta(hours=1))
    task = services.run_schedule(schedule.pk)
    assert task is not None
    assert task.traceparent == ""
