"""AI provider polling: ``provider``/``pollConfig`` validation, the ``polling`` status, polls run
by a real worker against a local fake provider (done, failed, timeout, unreadable answers, a
worker killed mid-poll), provider callbacks and signals on polling tasks, and the SSRF guard
on poll URLs."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient
from werkzeug import Request, Response

from asyncqueue_django import providers, services, tasks
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import PollingTask, Task, Team, WebhookDelivery
from asyncqueue_django.values import TaskSpec
from tests.settings import ASYNCQUEUE as TEST_SETTINGS
from tests.worker import Worker, wait_for

POLL = {
    "urlTemplate": "{startResult.body.urls.get}",
    "interval": 1,
    "statusPath": "status",
    "doneValues": ["succeeded"],
    "failValues": ["failed", "canceled"],
    "resultPath": "output",
    "errorPath": "error",
    "maxDuration": 60,
}


class FakeProvider:
    """A local AI provider: ``POST /submit`` answers a job id and its status URL; the status
    URL answers what ``answers`` holds, one per poll (the last one repeats)."""

    def __init__(self, server: HTTPServer, answers: list[Any]) -> None:
        self.server, self.answers, self.polls = server, answers, 0
        server.expect_request("/submit").respond_with_json(
            {"id": "job-1", "urls": {"get": server.url_for("/jobs/job-1")}}, status=201
        )
        server.expect_request("/jobs/job-1").respond_with_handler(self.status)
        server.expect_request("/hooks").respond_with_data("ok")

    def status(self, request: Request) -> Response:
        answer = self.answers[min(self.polls, len(self.answers) - 1)]
        self.polls += 1
        if callable(answer):
            return answer(request)
        if isinstance(answer, str):
            return Response(answer, 200, content_type="text/html")
        return Response(json.dumps(answer), 200, content_type="application/json")

    def events(self) -> list[str]:
        return [json.loads(r.get_data())["event"] for r, _ in self.server.log if r.path == "/hooks"]


def _create(client: APIClient, server: HTTPServer, **body: Any) -> str:
    response = client.post(
        "/v1/tasks",
        {
            "targetUrl": server.url_for("/submit"),
            "payload": {"prompt": "a cat"},
            "onCompleteUrl": server.url_for("/hooks"),
            **body,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return str(response.json()["task"]["id"])


def _finished(task_id: str, timeout: float = 30) -> Task:
    return wait_for(  # type: ignore[no-any-return]
        lambda: Task.objects.filter(
            pk=task_id, status__in=["completed", "failed", "timeout", "cancelled"]
        ).first(),
        timeout,
    )


def _one_event(provider: FakeProvider, task_id: str, event: str) -> None:
    wait_for(lambda: provider.events())
    time.sleep(0.3)  # a second event, if there were one, would have come by now
    assert provider.events() == [event]
    assert WebhookDelivery.objects.filter(task_id=task_id).count() == 1


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"provider": "midjourney"}, "provider"),
        ({"pollConfig": {**POLL, "statusPath": None}}, "pollConfig.statusPath"),
        (
            {"pollConfig": {k: v for k, v in POLL.items() if k != "doneValues"}},
            "pollConfig.doneValues",
        ),
        (
            {"pollConfig": {**POLL, "urlTemplate": "https://x.example/{startResult.bdy.id}"}},
            "pollConfig.urlTemplate",
        ),
        (
            {"pollConfig": {**POLL, "urlTemplate": "https://x.example/{startResult.body.id"}},
            "pollConfig.urlTemplate",
        ),
        ({"pollConfig": {**POLL, "resultPath": "a..b"}}, "pollConfig.resultPath"),
        ({"pollConfig": {**POLL, "interval": 0}}, "pollConfig.interval"),
        ({"pollConfig": {**POLL, "maxDuration": 10**9}}, "pollConfig.maxDuration"),
        ({"pollConfig": {**POLL, "extra": 1}}, "pollConfig.extra"),
        ({"pollConfig": "fast"}, "pollConfig"),
        ({"pollConfig": POLL, "waitForSignal": True}, "waitForSignal"),
        ({"provider": "fal", "pollConfig": {"interval": 0}}, "pollConfig.interval"),
    ],
)
def test_bad_poll_settings_are_a_400_naming_the_field(
    client: APIClient, body: dict[str, Any], field: str
) -> None:
    response = client.post(
        "/v1/tasks", {"targetUrl": "https://api.example/submit", **body}, format="json"
    )
    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"], response.json()
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_interval_below_the_minimum_setting_is_refused(client: APIClient) -> None:
    with override_settings(ASYNCQUEUE={**TEST_SETTINGS, "MIN_POLL_INTERVAL": 5}):
        response = client.post(
            "/v1/tasks",
            {"targetUrl": "https://api.example/submit", "pollConfig": {**POLL, "interval": 2}},
            format="json",
        )
    assert response.status_code == 400
    assert "5" in response.json()["fields"]["pollConfig.interval"]


@pytest.mark.django_db
def test_provider_template_is_overridden_key_by_key(client: APIClient) -> None:
    response = client.post(
        "/v1/tasks",
        {
            "targetUrl": "https://queue.fal.run/fal-ai/x",
            "provider": "fal",
            "pollConfig": {"interval": 7},
        },
        format="json",
    )
    assert response.status_code == 201
    task = response.json()["task"]
    assert task["provider"] == "fal"
    assert task["pollConfig"]["interval"] == 7
    assert task["pollConfig"]["urlTemplate"] == "{startResult.body.status_url}"
    assert task["pollConfig"]["maxDuration"] == 600
    assert response.json()["signalToken"]  # a polling task can be signalled


@pytest.mark.django_db
def test_providers_endpoint_lists_the_templates_without_a_key(anon: APIClient) -> None:
    response = anon.get("/v1/providers")
    assert response.status_code == 200
    listed = {p["id"]: p for p in response.json()["providers"]}
    assert set(listed) >= {
        "fal",
        "replicate",
        "runwayml",
        "luma",
        "elevenlabs-dubbing",
        "stability-video",
    }
    timing = {
        k: (v["pollConfig"]["interval"], v["pollConfig"]["maxDuration"]) for k, v in listed.items()
    }
    assert timing == {
        "fal": (3, 600),
        "replicate": (5, 600),
        "runwayml": (5, 600),
        "luma": (5, 600),
        "elevenlabs-dubbing": (10, 1800),
        "stability-video": (10, 600),
    }
    for provider in listed.values():
        assert provider["docs"].startswith("https://")
        # Every template is itself a valid pollConfig.
        providers.check_poll_config(None, provider["id"])


def test_reading_poll_answers() -> None:
    config = providers.check_poll_config(POLL, None)
    read = providers.read_poll
    assert read(config, 200, b'{"status": "succeeded", "output": [1]}', False).value == [1]
    assert read(config, 200, b'{"status": "failed", "error": "NSFW"}', False) == providers.Reading(
        "failed", "NSFW"
    )
    assert read(config, 200, b'{"status": "starting"}', False).state == "running"
    assert read(config, 202, b"", False).state == "running"
    assert "not JSON" in read(config, 200, b"<html>", False).value
    assert "no status" in read(config, 200, b"{}", False).value
    assert read(config, 503, b"", False).state == "error"
    body = {"urls": {"get": "https://p.example/j/1"}, "id": "a b"}
    assert providers.render("{startResult.body.urls.get}", body, {}) == "https://p.example/j/1"
    assert (
        providers.render("https://p.example/{startResult.body.id}", body, {})
        == "https://p.example/a%20b"
    )
    assert (
        providers.render("https://p.example/{startResult.headers.X-Job}", {}, {"x-job": "7"})
        == "https://p.example/7"
    )
    with pytest.raises(providers.TemplateError):
        providers.render("https://p.example/{startResult.body.nope}", body, {})


# --------------------------------------------------------------------------------------------
# End to end with a real worker and a local fake provider
# --------------------------------------------------------------------------------------------

e2e = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_polls_until_done_and_completes_with_the_extracted_result(
    client: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    provider = FakeProvider(
        httpserver,
        [
            {"status": "starting"},
            {"status": "processing"},
            {"status": "succeeded", "output": {"video": "v.mp4"}},
        ],
    )
    task_id = _create(client, httpserver, pollConfig=POLL)
    wait_for(lambda: Task.objects.filter(pk=task_id, status="polling").exists())
    polling = client.get(f"/v1/tasks/{task_id}").json()["task"]
    assert polling["pollUrl"] == httpserver.url_for("/jobs/job-1")
    task = _finished(task_id)
    assert task.status == "completed"
    assert task.result == {"video": "v.mp4"}
    shown = client.get(f"/v1/tasks/{task_id}").json()["task"]
    assert shown["pollCount"] == 3
    assert shown["lastPollStatusCode"] == 200
    assert shown["lastPolledAt"] is not None
    _one_event(provider, task_id, "task.completed")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_provider_template_fetches_the_result_url(
    client: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/submit").respond_with_json(
        {
            "request_id": "r1",
            "status_url": httpserver.url_for("/requests/r1/status"),
            "response_url": httpserver.url_for("/requests/r1"),
        }
    )
    httpserver.expect_request("/requests/r1/status").respond_with_json({"status": "COMPLETED"})
    httpserver.expect_request("/requests/r1").respond_with_json({"images": ["a.png"]})
    task_id = _create(
        client,
        httpserver,
        provider="fal",
        pollConfig={"interval": 1},
        headers={"Authorization": "Key secret-fal-key"},
        onCompleteUrl=None,
    )
    task = _finished(task_id)
    assert task.status == "completed"
    assert task.result == {"images": ["a.png"]}
    poll = next(r for r, _ in httpserver.log if r.path == "/requests/r1/status")
    assert poll.headers["Authorization"] == "Key secret-fal-key"  # forwardAuth
    assert poll.headers["X-AsyncQueue-Task-Id"] == task_id


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_provider_failure_fails_the_task_with_the_extracted_error(
    client: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    provider = FakeProvider(
        httpserver, [{"status": "processing"}, {"status": "failed", "error": "NSFW content"}]
    )
    task_id = _create(client, httpserver, pollConfig=POLL)
    task = _finished(task_id)
    assert task.status == "failed"
    assert task.error == "NSFW content"
    _one_event(provider, task_id, "task.failed")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_unreadable_answers_are_retried_until_max_duration_then_timeout(
    client: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    provider = FakeProvider(httpserver, ["<html>busy</html>", {"progress": 3}])
    task_id = _create(client, httpserver, pollConfig={**POLL, "maxDuration": 3})
    wait_for(lambda: Task.objects.filter(pk=task_id, poll_count__gte=1).exists())
    first_error = Task.objects.get(pk=task_id).last_poll_error
    assert "not JSON" in first_error
    task = _finished(task_id)
    assert task.status == "timeout"
    assert "maxDuration (3s)" in task.error
    assert "no status" in task.last_poll_error
    assert task.poll_count >= 2
    _one_event(provider, task_id, "task.timeout")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_callback_and_signal_resolve_a_polling_task(
    client: APIClient, anon: APIClient, celery_worker: Worker, httpserver: HTTPServer
) -> None:
    provider = FakeProvider(httpserver, [{"status": "processing"}])
    response = client.post(
        "/v1/tasks",
        {
            "targetUrl": httpserver.url_for("/submit"),
            "payload": {"webhook": "{asyncqueue_callback_url}"},
            "pollConfig": POLL,
            "onCompleteUrl": httpserver.url_for("/hooks"),
        },
        format="json",
    )
    task_id, callback_url = response.json()["task"]["id"], response.json()["callbackUrl"]
    wait_for(lambda: Task.objects.filter(pk=task_id, status="polling", poll_count__gte=1).exists())
    done = anon.post(
        callback_url.removeprefix("http://testserver"),
        data='{"video": "w.mp4"}',
        content_type="application/json",
    )
    assert done.status_code == 200
    assert done.json()["task"]["status"] == "completed"
    _one_event(provider, task_id, "task.completed")
    polls = provider.polls
    time.sleep(1.5)  # no poll after the task is resolved
    assert provider.polls <= polls + 1

    # A signal resolves a polling task too; cancel as well.
    second = client.post(
        "/v1/tasks", {"targetUrl": httpserver.url_for("/submit"), "pollConfig": POLL}, format="json"
    ).json()
    wait_for(lambda: Task.objects.filter(pk=second["task"]["id"], status="polling").exists())
    signalled = anon.post(
        f"/v1/signals/{second['signalToken']}",
        {"status": "failed", "error": "gave up"},
        format="json",
    )
    assert signalled.status_code == 200
    assert signalled.json()["task"]["status"] == "failed"
    third = client.post(
        "/v1/tasks", {"targetUrl": httpserver.url_for("/submit"), "pollConfig": POLL}, format="json"
    ).json()
    wait_for(lambda: Task.objects.filter(pk=third["task"]["id"], status="polling").exists())
    assert (
        client.post(f"/v1/tasks/{third['task']['id']}/cancel").json()["task"]["status"]
        == "cancelled"
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_sandbox_polling_task_completes_without_calling_anyone(
    team: Team, celery_worker: Worker
) -> None:
    key = services.create_api_key(team, "sandbox", mode="test").raw_key
    sandbox = APIClient()
    sandbox.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    task_id = sandbox.post(
        "/v1/tasks",
        {"targetUrl": "https://api.replicate.com/v1/predictions", "provider": "replicate"},
        format="json",
    ).json()["task"]["id"]
    task = _finished(task_id)
    assert task.status == "completed"
    assert task.result == {"statusCode": 200, "sandbox": True}
    assert task.poll_count == 0


@pytest.fixture
def threaded_server() -> Iterator[HTTPServer]:
    server = HTTPServer(threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_poll_resumes_polling(
    team: Team, threaded_server: HTTPServer, worker_factory: Callable[..., Worker]
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def first_hangs(request: Request) -> Response:
        arrived.set()
        release.wait(30)
        return Response('{"status": "processing"}', 200, content_type="application/json")

    provider = FakeProvider(threaded_server, [first_hangs, {"status": "succeeded", "output": 42}])
    overrides = {"LEASE_MARGIN": 1, "CONNECT_TIMEOUT": 1, "DISPATCH_GRACE": 1}
    env = {"ASYNCQUEUE_TEST_OVERRIDES": json.dumps(overrides)}
    worker = worker_factory(queues="pollcrash", beat=False, concurrency=2, **env)
    created = services.create_task(
        team,
        TaskSpec(
            target_url=threaded_server.url_for("/submit"),
            queue="pollcrash",
            timeout=3,
            poll_config=providers.check_poll_config(POLL, None),
        ),
    )
    task_id = str(created.task.pk)
    # Kill the worker while its first poll is in flight: claimed (leased) and arrived at the
    # provider, which holds the answer. (The lease alone is not enough: a worker killed between
    # its claim and sending the request makes no poll, and the provider's answers shift.)
    assert arrived.wait(30)
    assert PollingTask.objects.filter(
        pk=task_id, status="polling", lease_expires_at__isnull=False
    ).exists()
    worker.kill()
    release.set()
    worker = worker_factory(queues="pollcrash", beat=False, concurrency=2, **env)
    try:
        # The sweeps (beat's job) recover the lost poll once its lease has run out.
        def recovered() -> Task | None:
            services.recover_stale_polls()
            services.redispatch_lost_polls()
            return Task.objects.filter(pk=task_id, status="completed").first()

        task = wait_for(recovered, 60, interval=0.5)
    finally:
        worker.stop()
    assert task.result == 42
    assert task.poll_count == 2  # the lost poll is counted
    assert provider.polls == 2


@pytest.mark.django_db(transaction=True)
def test_polls_due_together_share_one_wake_up_and_run_as_one_batch(
    team: Team, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve tasks start polling at once: their first polls are due within a moment of each
    other and share a wake-up (not one message per poll); one wake-up claims and polls them
    all concurrently and records each outcome once; a duplicate wake-up polls nothing."""
    from asyncqueue_django.services import engine
    from asyncqueue_django.values import Message

    polled: list[str] = []

    def status(request: Request) -> Response:
        polled.append(request.path)
        job = request.path.rsplit("/", 1)[1]
        body = {"status": "succeeded", "output": int(job)}
        return Response(json.dumps(body), 200, content_type="application/json")

    httpserver.expect_request(re.compile(r"/jobs/\d+")).respond_with_handler(status)
    queue = "unconsumed-pollbatch"
    for _ in range(12):
        services.create_task(
            team,
            TaskSpec(
                target_url="http://127.0.0.1:9/submit",
                queue=queue,
                poll_config=providers.check_poll_config(POLL, None),
            ),
        )
    submitting = services.claim_due_tasks(queue, "w", limit=16)
    assert len(submitting) == 12
    sent: list[Message] = []
    monkeypatch.setattr(engine, "publisher", sent.append)
    answers = [
        CallResult(
            status_code=201,
            headers={"Content-Type": "application/json"},
            body=json.dumps({"urls": {"get": httpserver.url_for(f"/jobs/{i}")}}).encode(),
        )
        for i in range(12)
    ]
    statuses = services.finish_attempts(list(zip(submitting, answers, strict=True)), worker="w")
    assert statuses == ["polling"] * 12
    engine.wakeups.flush()
    polls = [m for m in sent if m.args[:1] == ("poll",)]
    assert {m.task_name for m in sent} == {"asyncqueue.run_due"}  # no asyncqueue.poll_task
    assert 1 <= len(polls) <= 2  # one due slot, or two when the finish straddles a grid line
    assert all(m.args[:2] == ("poll", queue) and 0.8 < m.countdown <= 1 + 1 / 8 for m in polls)

    PollingTask.objects.filter(queue=queue).update(next_attempt_at=timezone.now())
    assert tasks.run_due.run("poll", queue) == 12
    assert sorted(polled) == sorted(f"/jobs/{i}" for i in range(12))
    assert tasks.run_due.run("poll", queue) == 0  # a duplicate wake-up
    assert len(polled) == 12
    done = Task.objects.filter(queue=queue)
    assert sorted(done.values_list("status", "result", "poll_count")) == [
        ("completed", i, 1) for i in range(12)
    ]


# --------------------------------------------------------------------------------------------
# SSRF: a poll URL that resolves to a private address is refused at connect time
# --------------------------------------------------------------------------------------------


def _submitting(team: Team) -> Task:
    """A task that polls, claimed by worker "w" for its submit call."""
    created = services.create_task(
        team,
        TaskSpec(
            target_url="http://127.0.0.1:9/submit",
            poll_config=providers.check_poll_config(POLL, None),
        ),
    )
    task = services.claim_task(created.task.pk, "w")
    assert task is not None
    return task


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:9/jobs/1", "http://127.0.0.2:9/jobs/1", "http://localhost:9/jobs/1"]
)
def test_poll_url_to_a_private_address_fails_the_task(team: Team, url: str) -> None:
    task = _submitting(team)
    submitted = CallResult(
        status_code=201,
        headers={"Content-Type": "application/json"},
        body=json.dumps({"urls": {"get": url}}).encode(),
    )
    assert services.finish_attempt(task, submitted, worker="w") == "polling"
    PollingTask.objects.filter(pk=task.pk).update(next_attempt_at=task.created_at)
    settings = {
        **TEST_SETTINGS,
        "ALLOW_PRIVATE_TARGETS": False,
        "ALLOWED_NETWORKS": ["127.0.0.1/32"],
    }
    with override_settings(ASYNCQUEUE=settings):
        polled = services.claim_poll(task.pk, "w")
        assert polled is not None
        answer = tasks._poll(polled)()
        assert answer.error_kind == "blocked"
        assert services.finish_poll(polled, answer, worker="w") == "failed"
    failed = Task.objects.get(pk=task.pk)
    assert failed.error.startswith("Poll refused")
    assert failed.poll_count == 1


@pytest.mark.django_db
def test_submit_answer_without_the_template_field_fails_the_task(team: Team) -> None:
    task = _submitting(team)
    answer = CallResult(
        status_code=200, headers={"Content-Type": "application/json"}, body=b'{"id": 1}'
    )
    assert services.finish_attempt(task, answer, worker="w") == "failed"
    assert "no startResult.body.urls.get" in Task.objects.get(pk=task.pk).error


@pytest.mark.django_db
def test_an_operator_completes_a_polling_task_with_one_event(team: Team) -> None:
    task = _submitting(team)
    Task.objects.filter(pk=task.pk).update(on_complete_url="https://example.com/done")
    task.refresh_from_db()
    submitted = CallResult(
        status_code=201,
        headers={"Content-Type": "application/json"},
        body=b'{"urls": {"get": "https://provider.example/jobs/1"}}',
    )
    assert services.finish_attempt(task, submitted, worker="w") == "polling"
    polling = Task.objects.get(pk=task.pk)
    assert polling.poll_config["resolved"] == {"url": "https://provider.example/jobs/1"}
    assert polling.wait_deadline is not None
    done = services.resolve_waiting_task(team, task.pk, "completed", result={"by": "operator"})
    assert done.status == "completed"
    assert done.result == {"by": "operator"}
    assert WebhookDelivery.objects.filter(task=task).count() == 1
    # A poll claimed before the operator acted finds the task resolved: nothing is written.
    assert services.claim_poll(task.pk, "w") is None


@pytest.mark.django_db
@pytest.mark.parametrize("forward", [True, False])
def test_a_poll_is_signed_and_forwards_the_task_headers_only_when_asked(
    team: Team, forward: bool
) -> None:
    from asyncqueue_django import outbound

    created = services.create_task(
        team,
        TaskSpec(
            target_url="http://127.0.0.1:9/submit",
            headers={"Authorization": "Bearer provider-key", "X-Runway-Version": "2024-11-06"},
            poll_config=providers.check_poll_config({**POLL, "forwardAuth": forward}, None),
        ),
    )
    task = services.claim_task(created.task.pk, "w")
    assert task is not None
    submitted = CallResult(
        status_code=200,
        headers={"Content-Type": "application/json"},
        body=b'{"urls": {"get": "http://127.0.0.1:9/jobs/1"}, "r": "https://x.example/r"}',
    )
    assert services.finish_attempt(task, submitted, worker="w") == "polling"
    url, headers, result_url = outbound.build_poll(PollingTask.objects.get(pk=task.pk))
    assert url == "http://127.0.0.1:9/jobs/1"
    assert result_url is None
    assert "webhook-signature" in headers
    assert headers["X-AsyncQueue-Poll"] == "1"
    assert ("Authorization" in headers) is forward
    assert ("X-Runway-Version" in headers) is forward


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("template", "result_template", "forwarded", "result_forwarded"),
    [
        # The answer names a URL on the target's origin: the key goes with the poll.
        ("{startResult.body.same}", "{startResult.body.same}", True, True),
        # The answer names another host: nothing but credential-free headers goes there.
        ("{startResult.body.other}", "{startResult.body.other}", False, False),
        ("https://{startResult.body.host}/jobs/1", None, False, None),
        ("https://api.provider.example{startResult.body.suffix}", None, False, None),
        # The task's creator wrote the origin out: its headers go there, as asked.
        ("https://status.provider.example/jobs/{startResult.body.id}", None, True, None),
        ("https://status.provider.example/jobs/1", "{startResult.body.other}", True, False),
    ],
)
def test_an_answer_cannot_send_the_task_credentials_to_an_origin_of_its_choice(
    team: Team,
    template: str,
    result_template: str | None,
    forwarded: bool,
    result_forwarded: bool | None,
) -> None:
    from asyncqueue_django import outbound

    vault_id = str(services.create_token(team, "provider", "Key vault-secret").pk)
    given = {**POLL, "urlTemplate": template, "forwardAuth": True, "resultPath": None}
    if result_template is not None:
        given["resultUrlTemplate"] = result_template
    created = services.create_task(
        team,
        TaskSpec(
            target_url="https://api.provider.example/submit",
            headers={"Authorization": vault_id, "X-Api-Version": "2"},
            poll_config=providers.check_poll_config(given, None),
        ),
    )
    task = services.claim_task(created.task.pk, "w")
    assert task is not None
    answer = {
        "same": "https://api.provider.example/jobs/1",
        "other": "https://attacker.example/collect",
        "host": "attacker.example",
        "suffix": ".attacker.example",
        "id": "1",
    }
    submitted = CallResult(status_code=200, body=json.dumps(answer).encode())
    assert services.finish_attempt(task, submitted, worker="w") == "polling"
    polling = PollingTask.objects.get(pk=task.pk)
    _, headers, result_url = outbound.build_poll(polling)
    assert ("Authorization" in headers) is forwarded
    assert ("X-Api-Version" in headers) is forwarded
    assert headers.get("Authorization") in (None, "Key vault-secret")
    assert "webhook-signature" in headers  # signed either way
    if result_forwarded is not None:
        assert result_url is not None
        fetch = outbound.build_result_fetch(polling)
        assert ("Authorization" in fetch) is result_forwarded
        assert "webhook-signature" in fetch


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("urlTemplate", "http://169.254.169.254/latest/{startResult.body.id}"),
        ("urlTemplate", "http://2130706433/jobs/{startResult.body.id}"),
        ("resultUrlTemplate", "http://0x7f.1/{startResult.body.id}"),
    ],
)
def test_a_poll_url_template_on_a_private_address_is_a_400_naming_it(
    client: APIClient, key: str, url: str
) -> None:
    config = {**POLL, "urlTemplate": "https://provider.example/{startResult.body.id}", key: url}
    config.pop("resultPath")
    guarded = {**TEST_SETTINGS, "ALLOW_PRIVATE_TARGETS": False, "ALLOWED_NETWORKS": []}
    with override_settings(ASYNCQUEUE=guarded):
        response = client.post(
            "/v1/tasks",
            {"targetUrl": "https://provider.example/submit", "pollConfig": config},
            format="json",
        )
    assert response.status_code == 400, response.json()
    assert list(response.json()["fields"]) == [f"pollConfig.{key}"]


def test_the_placeholder_is_url_encoded_only_in_a_query() -> None:
    hook = "https://q.example/v1/callbacks/ab"
    fill = providers.fill_url_placeholder
    assert fill("https://p.example/jobs?webhook={asyncqueue_callback_url}", hook) == (
        "https://p.example/jobs?webhook=https%3A%2F%2Fq.example%2Fv1%2Fcallbacks%2Fab"
    )
    assert fill("{asyncqueue_callback_url}", hook) == hook
    assert providers.fill_placeholder({"a": ["x {asyncqueue_callback_url}"]}, hook) == {
        "a": [f"x {hook}"]
    }
