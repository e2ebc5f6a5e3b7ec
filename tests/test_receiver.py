"""``receiver.py``: ``verify`` and the ``@verify_webhook`` view decorator for receiving projects."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from asyncqueue_django import receiver, signing, tokens

SECRET = tokens.new_webhook_secret()
NEW_SECRET = tokens.new_webhook_secret()
BODY = json.dumps({"event": "task.completed", "task": {"id": "t1"}}).encode()

seen: list[dict[str, Any]] = []


@receiver.verify_webhook(secrets=[SECRET])
def fixed_view(request: HttpRequest) -> HttpResponse:
    seen.append(json.loads(request.body))
    return HttpResponse(status=204)


@receiver.verify_webhook(secrets=lambda request: [NEW_SECRET, SECRET], tolerance=60)
def rotating_view(request: HttpRequest, tenant: str) -> HttpResponse:
    return HttpResponse(tenant)


urlpatterns = [
    path("hooks/fixed", fixed_view),
    path("hooks/<str:tenant>/rotating", rotating_view),
]

pytestmark = pytest.mark.urls(__name__)


def post(url: str, body: bytes, headers: dict[str, str]) -> Any:
    client = Client(enforce_csrf_checks=True)  # the decorator makes the view CSRF-exempt
    return client.post(url, body, content_type="application/json", headers=headers)


# ---------------------------------------------------------------- verify()


def test_verify_accepts_both_formats() -> None:
    headers = signing.sign([SECRET], "evt_1", BODY)
    receiver.verify(BODY, headers, [SECRET])
    receiver.verify(BODY, {"x-asyncqueue-signature": headers["X-AsyncQueue-Signature"]}, [SECRET])


def test_verify_raises_typed_errors() -> None:
    headers = signing.sign([SECRET], "evt_1", BODY, timestamp=int(time.time()) - 3600)
    with pytest.raises(receiver.TimestampOutOfRange):
        receiver.verify(BODY, headers, [SECRET])
    with pytest.raises(receiver.MissingSignature):
        receiver.verify(BODY, {}, [SECRET])
    with pytest.raises(receiver.SignatureMismatch):
        receiver.verify(BODY, signing.sign([NEW_SECRET], "e", BODY), [SECRET])
    assert issubclass(receiver.MalformedSignature, receiver.SignatureError)


def test_verify_tolerance_is_adjustable() -> None:
    headers = signing.sign([SECRET], "evt_1", BODY, timestamp=int(time.time()) - 120)
    receiver.verify(BODY, headers, [SECRET])
    with pytest.raises(receiver.TimestampOutOfRange):
        receiver.verify(BODY, headers, [SECRET], tolerance=60)


# ---------------------------------------------------------------- @verify_webhook


def test_decorator_passes_a_signed_request_through() -> None:
    seen.clear()
    response = post("/hooks/fixed", BODY, signing.sign([SECRET], "evt_1", BODY))
    assert response.status_code == 204
    assert seen == [json.loads(BODY)]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param(signing.sign([NEW_SECRET], "evt", BODY), id="other-secret"),
        pytest.param(signing.sign([SECRET], "evt", BODY, timestamp=1_000_000_000), id="old"),
        pytest.param(
            signing.sign([SECRET], "evt", BODY, timestamp=int(time.time()) + 3600), id="future"
        ),
        pytest.param(signing.sign([SECRET], "evt", BODY + b" "), id="other-body"),
        pytest.param({"X-AsyncQueue-Signature": "t=1,v1=zz"}, id="malformed"),
    ],
)
def test_decorator_answers_400_to_a_bad_signature(headers: dict[str, str]) -> None:
    seen.clear()
    response = post("/hooks/fixed", BODY, headers)
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid webhook signature"}
    assert seen == []


def test_decorator_does_not_tell_the_caller_why() -> None:
    old = signing.sign([SECRET], "evt", BODY, timestamp=1_000_000_000)
    wrong = signing.sign([NEW_SECRET], "evt", BODY)
    assert post("/hooks/fixed", BODY, old).content == post("/hooks/fixed", BODY, wrong).content


def test_decorator_with_a_callable_and_rotated_secrets() -> None:
    """A receiver that already holds the new secret accepts both old- and new-signed requests."""
    for secrets in ([SECRET], [NEW_SECRET], [NEW_SECRET, SECRET]):
        response = post("/hooks/acme/rotating", BODY, signing.sign(secrets, "evt", BODY))
        assert response.status_code == 200
        assert response.content == b"acme"
    stale = signing.sign([SECRET], "evt", BODY, timestamp=int(time.time()) - 120)
    assert post("/hooks/acme/rotating", BODY, stale).status_code == 400  # tolerance=60


def test_decorator_keeps_the_view_name() -> None:
    assert fixed_view.__name__ == "fixed_view"
    assert getattr(fixed_view, "csrf_exempt", False) is True


def test_module_needs_no_models_drf_or_celery() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import asyncqueue_django.receiver; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('rest_framework', 'celery') or m == 'asyncqueue_django.models'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
