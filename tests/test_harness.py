"""The test harness's own guarantees: what one test sees of the shared local HTTP server."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from werkzeug import Request, Response

from tests.conftest import DrainingHTTPServer


def test_a_late_answer_never_reaches_the_next_tests_log(httpserver: DrainingHTTPServer) -> None:
    """A handler still running when its test ends (its client gave up) finishes before the log
    is cleared, so the next test's `httpserver.log` starts empty and stays its own."""
    started = threading.Event()

    def slow(request: Request) -> Response:
        started.set()
        time.sleep(0.6)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    with pytest.raises(requests.Timeout):
        requests.get(httpserver.url_for("/slow"), timeout=0.1)
    assert started.is_set()

    httpserver.fresh()  # what the fixture does between two tests
    time.sleep(0.8)  # longer than the handler had left
    assert httpserver.log == []
