"""``/metrics`` with the deployment it is meant for: the API on gunicorn with two worker
processes, a prefork Celery worker with two children, and real callbacks. Whichever web
process answers a scrape, the counts are the database's (nothing is counted in one process's
memory), and they match what was created and what happened."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection
from pytest_httpserver import HTTPServer

from asyncqueue_django import services
from asyncqueue_django.models import Attempt, Task, WebhookAttempt
from tests.test_metrics import parse, value
from tests.worker import ROOT, Worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
TOKEN = "e2e-metrics-token-0123456789"

gunicorn = pytest.importorskip("gunicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """The test project on gunicorn, two worker processes, on the test database."""
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    overrides = {**settings.ASYNCQUEUE, "METRICS_TOKEN": TOKEN, "METRICS_CACHE_SECONDS": 0}
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ASYNCQUEUE_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "ASYNCQUEUE_TEST_OVERRIDES": json.dumps(overrides),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "tests.wsgi:application",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "--log-level",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while log.read_text(errors="replace").count("Booting worker") < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        wait_for(lambda: _answers(url), timeout=30)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/metrics", timeout=5).status_code == 401
    except requests.ConnectionError:
        return False


def test_metrics_match_the_database_across_web_and_worker_processes(
    web: str, worker_factory: Callable[..., Worker], httpserver: HTTPServer
) -> None:
    worker_factory(pool="prefork", concurrency=2, beat=False)
    httpserver.expect_request("/ok").respond_with_json({"ok": True})
    httpserver.expect_request("/fail").respond_with_data("no", status=404)
    httpserver.expect_request("/hook").respond_with_data("", status=204)
    team = services.get_or_create_team("acme")[0]
    key = services.create_api_key(team, "e2e").raw_key
    plan: list[dict[str, Any]] = (
        [{"targetUrl": httpserver.url_for("/ok"), "queue": "default"}] * 8
        + [{"targetUrl": httpserver.url_for("/fail"), "queue": "high", "maxRetries": 0}] * 4
        + [
            {
                "targetUrl": httpserver.url_for("/ok"),
                "queue": "low",
                "onCompleteUrl": httpserver.url_for("/hook"),
            }
        ]
        * 3
        + [{"targetUrl": httpserver.url_for("/ok"), "queue": "low", "delay": 3600}] * 2
    )
    for body in plan:  # a new connection each time: either web process may take it
        response = requests.post(
            f"{web}/v1/tasks",
            json=body,
            headers={"Authorization": f"Bearer {key}", "Connection": "close"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
    wait_for(lambda: Task.objects.filter(status__in=["completed", "failed"]).count() == 15, 60)
    wait_for(lambda: WebhookAttempt.objects.filter(status_code=204).count() == 3, 60)

    scrapes = []
    for _ in range(6):
        response = requests.get(
            f"{web}/metrics",
            headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"},
            timeout=30,
        )
        assert response.status_code == 200
        scrapes.append(parse(response.text))
    counters = {
        k: v
        for k, v in scrapes[0].items()
        if k[0] != "asyncqueue_metrics_collect_duration_seconds" and "age_seconds" not in k[0]
    }
    for other in scrapes[1:]:
        assert {k: other[k] for k in counters} == counters

    s = scrapes[0]
    assert value(s, "asyncqueue_tasks_created_total", queue="default") == 8
    assert value(s, "asyncqueue_tasks_created_total", queue="high") == 4
    assert value(s, "asyncqueue_tasks_created_total", queue="low") == 5
    assert value(s, "asyncqueue_tasks_finished_total", queue="default", status="completed") == 8
    assert value(s, "asyncqueue_tasks_finished_total", queue="high", status="failed") == 4
    assert value(s, "asyncqueue_tasks_finished_total", queue="low", status="completed") == 3
    assert value(s, "asyncqueue_queue_tasks", queue="low", status="delayed") == 2
    assert value(s, "asyncqueue_attempt_duration_seconds_count") == 15
    assert Attempt.objects.exclude(duration_ms=None).count() == 15
    assert value(s, "asyncqueue_webhook_deliveries_total", outcome="delivered") == 3
    # And every finished count is the database's, status by status.
    for queue, status in Task.objects.values_list("queue", "status").distinct():
        if status in ("completed", "failed"):
            n = Task.objects.filter(queue=queue, status=status).count()
            assert value(s, "asyncqueue_tasks_finished_total", queue=queue, status=status) == n
