"""Signal tokens and callback ids stay out of access logs: the rule (`redact_path`), the logging
filter on the records of each server that logs through Python, and the servers themselves —
gunicorn and Django's development server as real processes, answering real signals and
callbacks, with their access logs read back from disk."""

from __future__ import annotations

import http.client
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection

from asyncqueue_django import accesslog, services
from asyncqueue_django.accesslog import RedactCredentials, redact_path
from asyncqueue_django.values import TaskSpec
from tests.worker import ROOT, wait_for

TOKEN = "9f" * 32


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"/v1/signals/{TOKEN}", "/v1/signals/[redacted]"),
        (f"/v1/signals/{TOKEN}/", "/v1/signals/[redacted]/"),
        (f"/v1/signals/{TOKEN}/heartbeat", "/v1/signals/[redacted]/heartbeat"),
        (f"/v1/callbacks/{TOKEN}", "/v1/callbacks/[redacted]"),
        (f"/v1/callbacks/{TOKEN}?via=provider", "/v1/callbacks/[redacted]?via=provider"),
        (f"POST /v1/signals/{TOKEN} HTTP/1.1", "POST /v1/signals/[redacted] HTTP/1.1"),
        (f'"POST /v1/signals/{TOKEN} HTTP/1.1" 200', '"POST /v1/signals/[redacted] HTTP/1.1" 200'),
        (
            f"https://aq.example.com/api/v1/callbacks/{TOKEN}",
            "https://aq.example.com/api/v1/callbacks/[redacted]",
        ),
        # The segment ends where the decoded path's does.
        ("/v1/signals/ab%2Fcd%20ef", "/v1/signals/[redacted]%2Fcd%20ef"),
        # Percent-encoded anywhere: the server decodes the path before Django routes it, so
        # each of these reaches the signal or callback view.
        (f"POST /v1/%73ignals/{TOKEN} HTTP/1.1", "POST /v1/%73ignals/[redacted] HTTP/1.1"),
        (f"/v1/signals%2F{TOKEN}", "/v1/signals%2F[redacted]"),
        (f"/v1%2Fsignals/{TOKEN}", "/v1%2Fsignals/[redacted]"),
        (f"%2Fv1%2Fsignals%2F{TOKEN}", "%2Fv1%2Fsignals%2F[redacted]"),
        (f"/v1/callbacks%2f{TOKEN}", "/v1/callbacks%2f[redacted]"),
        (f"/v1/%63allbacks/{TOKEN}", "/v1/%63allbacks/[redacted]"),
        (f"/v1/signals/%39f{TOKEN[2:]}", "/v1/signals/[redacted]"),
        (f"/v1/signals/9f%39f{TOKEN[4:]}/heartbeat", "/v1/signals/[redacted]/heartbeat"),
        # A callback URL handed to a provider in a query string (the README's own pattern).
        (
            f'"POST /jobs?webhook=http%3A%2F%2Fh%3A8000%2Fv1%2Fcallbacks%2F{TOKEN} HTTP/1.1" 201',
            '"POST /jobs?webhook=http%3A%2F%2Fh%3A8000%2Fv1%2Fcallbacks%2F[redacted] HTTP/1.1" 201',
        ),
        (
            f"GET /v1/tasks?x=%2Fv1%2Fsignals%2F{TOKEN}",
            "GET /v1/tasks?x=%2Fv1%2Fsignals%2F[redacted]",
        ),
        # Separators doubled, dotted, backslashed, with a ;parameter; an absolute-form target.
        (f"/v1/signals//{TOKEN}", "/v1/signals//[redacted]"),
        (f"/v1//signals/{TOKEN}", "/v1//signals/[redacted]"),
        (f"/v1/./signals/{TOKEN}", "/v1/./signals/[redacted]"),
        (f"/v1/signals;/{TOKEN}", "/v1/signals;/[redacted]"),
        (f"/v1/signals\\{TOKEN}", "/v1/signals\\[redacted]"),
        (
            f"POST http://127.0.0.1:8000/v1/signals/{TOKEN} HTTP/1.1",
            "POST http://127.0.0.1:8000/v1/signals/[redacted] HTTP/1.1",
        ),
        # 64 hex digits anywhere: a token sent after a space (the server's "Bad request syntax").
        (
            f"Bad request syntax ('POST /v1/signals/ {TOKEN} HTTP/1.1')",
            "Bad request syntax ('POST /v1/signals/ [redacted] HTTP/1.1')",
        ),
        (f"/whatever/{TOKEN.upper()}x", "/whatever/[redacted]x"),
        (f"/V1/Signals/{TOKEN}", "/V1/Signals/[redacted]"),  # a miscased path 404s, with its token
        # Two on one line (a log line quoting a referer, say): both.
        (
            f"/v1/signals/{TOKEN} from /v1/callbacks/{TOKEN}",
            "/v1/signals/[redacted] from /v1/callbacks/[redacted]",
        ),
    ],
)
def test_credential_segments_are_redacted(text: str, shown: str) -> None:
    assert redact_path(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "/v1/tasks/0192f0c4-7d1e-7c3a-9d2b-1f0e2d3c4b5a",  # a task id is not a credential
        "/v1/signals/",
        "/v1/signals",
        "GET /metrics HTTP/1.1",
        "/v2/signals/abc",
        "/xv1/signals/abc",
        "/v1/signalsx/abc",
        "100% done /v1/",
        "a" * 63,
        "",
    ],
)
def test_other_paths_are_left_alone(text: str) -> None:
    assert redact_path(text) == text


def _record(msg: str, args: object) -> logging.LogRecord:
    return logging.LogRecord("x", logging.INFO, __file__, 1, msg, args, None)  # type: ignore[arg-type]


def test_the_filter_redacts_message_and_tuple_arguments() -> None:
    # The shape of Django's development server record, and of uvicorn's.
    record = _record('"%s" %s %s', (f"POST /v1/signals/{TOKEN} HTTP/1.1", "200", "512"))
    assert RedactCredentials().filter(record) is True
    assert TOKEN not in record.getMessage()
    assert record.getMessage() == '"POST /v1/signals/[redacted] HTTP/1.1" 200 512'
    message = _record(f"Not Found: /v1/callbacks/{TOKEN}", None)
    RedactCredentials().filter(message)
    assert message.getMessage() == "Not Found: /v1/callbacks/[redacted]"


def test_the_filter_keeps_gunicorns_atoms_mapping_and_its_lookups() -> None:
    glogging = pytest.importorskip("gunicorn.glogging")
    atoms = glogging.SafeAtoms(
        {
            "r": f"POST /v1/signals/{TOKEN} HTTP/1.1",
            "U": f"/v1/signals/{TOKEN}",
            "s": "200",
            "{raw_uri}e": f"/v1/signals/{TOKEN}",
            "{user-agent}i": "curl/8",
        }
    )
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "x", None, None)
    record.args = atoms  # how logging stores a single mapping argument
    RedactCredentials().filter(record)
    assert record.args is atoms  # changed in place: SafeAtoms' own lookups still apply
    assert atoms["r"] == "POST /v1/signals/[redacted] HTTP/1.1"
    assert atoms["U"] == atoms["{raw_uri}e"] == "/v1/signals/[redacted]"
    assert atoms["{User-Agent}i"] == "curl/8"
    assert atoms["{missing}i"] == "-"


def test_the_app_puts_the_filter_on_each_access_logger_once() -> None:
    for name in accesslog.REDACTED_LOGGERS:  # at start (AppConfig.ready)
        assert any(isinstance(f, RedactCredentials) for f in logging.getLogger(name).filters)
    accesslog.install()  # a second install (a reload) adds nothing
    for name in accesslog.REDACTED_LOGGERS:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RedactCredentials) for f in filters) == 1, name


# --------------------------------------------------------------------------- the real servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(command: list[str], log: Path) -> Iterator[str]:
    """Run a web server on the test project and database; yield its base URL."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ASYNCQUEUE_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "ASYNCQUEUE_TEST_OVERRIDES": json.dumps(settings.ASYNCQUEUE),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "PYTHONUNBUFFERED": "1",
    }
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [part.format(port=port) for part in command],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{log.read_text()[-3000:]}")
            try:
                return requests.get(f"{url}/v1/tasks", timeout=5).status_code == 401
            except requests.ConnectionError:
                return False

        wait_for(answers, timeout=60)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(
    params=[
        pytest.param(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "tests.wsgi:application",
                "--workers",
                "1",
                "--bind",
                "127.0.0.1:{port}",
                "--access-logfile",
                "-",
            ],
            id="gunicorn",
        ),
        pytest.param(
            [sys.executable, "-m", "django", "runserver", "127.0.0.1:{port}", "--noreload"],
            id="runserver",
        ),
    ]
)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    if request.param[2] == "gunicorn":
        pytest.importorskip("gunicorn")
    log = tmp_path / "server.log"
    for url in _serve(request.param, log):
        yield url, log


@pytest.mark.django_db(transaction=True)
def test_a_servers_access_log_never_shows_a_signal_token_or_callback_id(
    server: tuple[str, Path],
) -> None:
    url, log = server
    team = services.get_or_create_team("acme")[0]
    token = services.create_task(
        team, TaskSpec(target_url="http://127.0.0.1:9/", wait_for_signal=True)
    ).signal_token
    unknown = secrets.token_hex(32)
    other = secrets.token_hex(32)  # a live callback-shaped id sent on odd paths
    host, port = url.removeprefix("http://").split(":")

    def post(path: str, body: bytes = b'{"status": "completed"}') -> int:
        """POST ``path`` byte for byte (an HTTP library would normalise the escapes)."""
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            return conn.getresponse().status
        finally:
            conn.close()

    answers = [
        post(f"/v1/signals/{token}/heartbeat", b'{"extendBy": 60}'),
        post(f"/v1/%73ignals/{token}"),  # routed to the signal view once decoded
        post(f"/v1/signals/{unknown}"),
        post(f"/v1/callbacks%2F{other}", b"done"),
        post(f"/V1/Signals/{unknown}"),  # no route: only Django's "Not Found" log has it
        post(f"/v1//signals/{unknown}"),
    ]
    assert answers == [409, 202, 404, 404, 404, 404]

    def logged() -> str | None:
        text = log.read_text(errors="replace")
        return text if text.count("[redacted]") >= len(answers) else None

    text = wait_for(logged, timeout=10)
    for secret in (str(token), unknown, other):
        assert secret not in text
    assert "/v1/signals/[redacted]/heartbeat" in text
    assert "/v1/%73ignals/[redacted]" in text
    assert "/v1/callbacks%2F[redacted]" in text


@pytest.mark.django_db
def test_djangos_request_log_of_an_unrouted_path_is_redacted(
    anon: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Django logs every 4xx as ``Not Found: <path>``; a miscased or mangled signal path is
    not routed to the signal view, and its log line is redacted all the same."""
    caplog.set_level(logging.WARNING, logger="django.request")
    for path in (f"/V1/Signals/{TOKEN}", f"/v1//signals/{TOKEN}", f"/v1/signals/x/{TOKEN}"):
        assert anon.post(path, {}, format="json").status_code == 404
    assert TOKEN not in caplog.text
    assert "Not Found: /V1/Signals/[redacted]" in caplog.text


@pytest.mark.django_db
def test_a_csrf_refusal_on_a_path_with_a_token_is_logged_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A session-authenticated page (the admin) refuses a POST without a CSRF cookie and
    Django logs the path under ``django.security.csrf``: redacted there too."""
    from rest_framework.test import APIClient

    caplog.set_level(logging.WARNING)
    strict = APIClient(enforce_csrf_checks=True)
    for path in (f"/admin/v1/signals/{TOKEN}", f"/admin/v1/callbacks/{TOKEN}"):
        assert strict.post(path, {}).status_code == 403
    assert TOKEN not in caplog.text
    assert "Forbidden (CSRF cookie not set.): /admin/v1/signals/[redacted]" in caplog.text
