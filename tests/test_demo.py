"""The example project's demo app (example_project/demo) end to end: its three
flows as the README describes them, over real HTTP against ``live_server``, with a real Celery
worker calling the demo's targets and delivering its webhooks.

The demo is installed in the test settings by a small, marked block (tests/settings.py,
tests/urls.py), so it runs on the suite's database and broker, SQLite or PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import requests
from demo.models import Conversion, Order, OrderStatus, ReceivedEvent, Review, ReviewStatus
from django.test import Client
from django.utils import timezone

from asyncqueue_django import services, signing
from asyncqueue_django.models import Task, Team, WebhookDelivery
from tests.worker import Worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TERMINAL = ("completed", "failed", "timeout", "cancelled")


@dataclass
class Demo:
    """The running demo: its base URL, the demo team's API key, and a cookie-keeping session
    that posts the demo's HTML forms the way a browser does (with the CSRF token)."""

    base: str
    key: str
    team: Team
    session: requests.Session = field(default_factory=requests.Session)

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}"}
        return requests.request(method, self.base + path, json=body, headers=headers, timeout=30)

    def form(self, path: str, data: dict[str, str]) -> requests.Response:
        page = self.session.get(f"{self.base}/demo/", timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, "the demo page renders a CSRF token"
        return self.session.post(
            self.base + path, data={**data, "csrfmiddlewaretoken": token[1]}, timeout=60
        )

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.api("GET", f"/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        task: dict[str, Any] = response.json()["task"]
        return task

    def poll(self, task_id: str, *statuses: str) -> dict[str, Any]:
        """A polling loop (every 0.2 s here instead of 5 s)."""
        wanted = statuses or TERMINAL
        result: dict[str, Any] = wait_for(
            lambda: (t := self.task(task_id))["status"] in wanted and t, interval=0.2
        )
        return result


@pytest.fixture
def demo(live_server: Any, settings: Any) -> Iterator[Demo]:
    team = services.get_or_create_team("demo")[0]
    key = services.create_api_key(team, "demo client").raw_key
    settings.DEMO_API_KEY = key
    settings.DEMO_TEAM = "demo"
    settings.DEMO_WEBHOOK_SECRETS = []
    settings.DEMO_BASE_URL = ""  # the origin each request came to: the live server
    d = Demo(base=live_server.url, key=key, team=team)
    yield d
    d.session.close()


def _stripe_event(payment_id: str, order_id: str) -> dict[str, Any]:
    return {
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": payment_id, "metadata": {"orderId": order_id}}},
    }


def _event(task_id: str, event_type: str) -> ReceivedEvent | None:
    return ReceivedEvent.objects.filter(task_id=task_id, event_type=event_type).first()


# --------------------------------------------------------------------------------------------
# The three flows, with a real worker
# --------------------------------------------------------------------------------------------


@pytest.mark.worker
def test_polling_flow(demo: Demo, celery_worker: Worker) -> None:
    # const { task } = await aq.tasks.create({ targetUrl: '…/api/convert-video', payload: … })
    created = demo.api(
        "POST",
        "/v1/tasks",
        {"targetUrl": f"{demo.base}/demo/api/convert-video", "payload": {"videoId": "abc123"}},
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["task"]["id"]
    assert "signalToken" not in created.json()

    # setInterval(… aq.tasks.get(task.id) … until completed / failed / timeout)
    result = demo.poll(task_id, "completed", "failed", "timeout")

    assert result["status"] == "completed"
    assert result["result"]["statusCode"] == 200
    assert result["result"]["body"] == {
        "videoId": "abc123",
        "status": "converted",
        "outputUrl": "https://cdn.example.com/videos/abc123.mp4",
    }
    assert Conversion.objects.get(task_id=task_id).video_id == "abc123"
    # The demo's own polling page shows the finished task and stops reloading.
    page = requests.get(f"{demo.base}/demo/tasks/{task_id}", timeout=30)
    assert '<strong id="task-status">completed</strong>' in page.text
    assert 'http-equiv="refresh"' not in page.text


@pytest.mark.worker
def test_polling_from_the_demo_client_form(demo: Demo, celery_worker: Worker) -> None:
    response = demo.form("/demo/client/convert-video", {"videoId": "vid_7"})
    assert response.status_code == 200
    task_id = response.url.rstrip("/").rsplit("/", 1)[-1]  # redirected to the polling page
    assert demo.poll(task_id)["status"] == "completed"
    assert Conversion.objects.get(task_id=task_id).video_id == "vid_7"


@pytest.mark.worker
def test_signal_flow_through_the_demo_client_and_review_page(
    demo: Demo, celery_worker: Worker
) -> None:
    # The demo client creates the waitForSignal task and stores the token with the document.
    response = demo.form("/demo/client/start-review", {"documentId": "doc_456"})
    assert response.status_code == 200
    review = Review.objects.get(document_id="doc_456")
    assert re.fullmatch(r"[0-9a-f]{64}", review.signal_token)
    task_id = str(review.task_id)

    # The callback to start-review answers 200; the task waits for the signal.
    task = demo.poll(task_id, "waiting", *TERMINAL)
    assert task["status"] == "waiting"
    assert task["waitForSignal"] is True
    assert task["maxWaitTime"] == 86400
    assert [a["statusCode"] for a in task["attempts"]] == [200]
    assert task["result"]["body"] == {"documentId": "doc_456", "status": "in_review"}
    review.refresh_from_db()
    assert review.status == ReviewStatus.IN_REVIEW

    page = demo.session.get(f"{demo.base}/demo/reviews/", timeout=30)
    assert f'id="review-{review.pk}"' in page.text
    assert review.signal_token not in page.text  # the page never shows the token

    # Later, a person approves: the demo POSTs {"status": "completed"} to /v1/signals/<token>.
    decided = demo.form(f"/demo/reviews/{review.pk}/decision", {"decision": "approve"})
    assert decided.status_code == 200
    assert "doc_456: approved" in decided.text

    task = demo.task(task_id)
    assert task["status"] == "completed"
    assert task["result"] == {"decision": "approved", "documentId": "doc_456"}
    review.refresh_from_db()
    assert review.status == ReviewStatus.APPROVED
    assert f'id="review-{review.pk}"' not in decided.text


@pytest.mark.worker
def test_signal_flow_created_and_signalled_by_the_caller(demo: Demo, celery_worker: Worker) -> None:
    """Task created and signalled by the caller itself (the README's curl path): the review
    page shows the document but has no token to decide it with."""
    created = demo.api(
        "POST",
        "/v1/tasks",
        {
            "targetUrl": f"{demo.base}/demo/api/start-review",
            "payload": {"documentId": "doc_900"},
            "waitForSignal": True,
            "maxWaitTime": 86400,
        },
    )
    assert created.status_code == 201, created.text
    task_id, signal_token = created.json()["task"]["id"], created.json()["signalToken"]
    assert demo.poll(task_id, "waiting", *TERMINAL)["status"] == "waiting"

    review = Review.objects.get(document_id="doc_900")
    assert (review.status, review.signal_token, str(review.task_id)) == ("in_review", "", task_id)
    page = requests.get(f"{demo.base}/demo/reviews/", timeout=30)
    assert f'id="review-{review.pk}"' not in page.text  # no Approve button without the token
    assert "doc_900" in page.text

    signal = requests.post(
        f"{demo.base}/v1/signals/{signal_token}",
        headers={"Content-Type": "application/json"},
        data=json.dumps({"status": "completed"}),
        timeout=30,
    )
    assert signal.status_code == 200, signal.text
    assert signal.json()["task"]["status"] == "completed"
    assert Task.objects.get(pk=task_id).status == "completed"


@pytest.mark.worker
def test_payment_flow_paid(demo: Demo, celery_worker: Worker) -> None:
    # 1. Create a task that waits for payment confirmation; 2. store the token with the order.
    response = demo.form(
        "/demo/client/start-checkout",
        {"orderId": "order_789", "amount": "99.99", "maxWaitTime": "3600"},
    )
    assert response.status_code == 200
    order = Order.objects.get(order_id="order_789")
    assert order.amount == Decimal("99.99")
    assert re.fullmatch(r"[0-9a-f]{64}", order.signal_token)
    task_id = str(order.task_id)

    task = demo.poll(task_id, "waiting", *TERMINAL)
    assert task["status"] == "waiting"
    assert task["payload"] == {"orderId": "order_789", "amount": 99.99}
    assert task["maxWaitTime"] == 3600
    assert task["onCompleteUrl"] == f"{demo.base}/demo/api/order-webhook"
    order.refresh_from_db()
    assert order.status == OrderStatus.AWAITING_PAYMENT
    assert task["result"]["body"]["paymentIntent"] == order.payment_intent

    # 3. The payment provider sends payment_intent.succeeded; the handler signals the task.
    paid = requests.post(
        f"{demo.base}/demo/api/stripe-webhook",
        json=_stripe_event(order.payment_intent, "order_789"),
        timeout=60,
    )
    assert paid.status_code == 200, paid.text
    assert paid.json() == {"received": True}

    task = demo.task(task_id)
    assert task["status"] == "completed"
    assert task["result"] == {"paymentId": order.payment_intent}

    # The onComplete webhook arrives, signed; the receiver verifies it and marks the order paid.
    event = wait_for(lambda: _event(task_id, "task.completed"))
    assert event.verified is True
    assert event.task_status == "completed"
    delivery = WebhookDelivery.objects.get(task_id=task_id)
    assert event.event_id == str(delivery.pk)
    order.refresh_from_db()
    assert (order.status, order.payment_id) == (OrderStatus.PAID, order.payment_intent)
    page = requests.get(f"{demo.base}/demo/events/", timeout=30)
    assert str(delivery.pk) in page.text


@pytest.mark.worker
def test_payment_flow_unpaid_times_out_and_the_webhook_fires(
    demo: Demo, celery_worker: Worker
) -> None:
    # Through the JSON client (the README's curl path), with maxWaitTime 2.
    response = requests.post(
        f"{demo.base}/demo/api/client/start-checkout",
        json={"orderId": "order_790", "amount": 12.5, "maxWaitTime": 2},
        headers={"Authorization": f"Bearer {demo.key}"},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    assert "signalToken" not in response.text  # the client keeps the token
    task_id = response.json()["taskId"]
    assert Order.objects.get(order_id="order_790").signal_token

    # Nobody pays: the task times out and the webhook fires with task.timeout.
    event = wait_for(lambda: _event(task_id, "task.timeout"))
    assert event.verified is True
    assert event.task_status == "timeout"
    task = demo.task(task_id)
    assert task["status"] == "timeout"
    assert task["error"] == "No signal within maxWaitTime (2s)"
    assert Order.objects.get(order_id="order_790").status == OrderStatus.EXPIRED

    # A payment arriving now is refused by the service; the order is marked for a refund.
    late = requests.post(
        f"{demo.base}/demo/api/stripe-webhook",
        json=_stripe_event("pi_late", "order_790"),
        timeout=60,
    )
    assert late.status_code == 200
    assert late.json()["refund"] is True
    assert "it has timed out" in late.json()["reason"]
    order = Order.objects.get(order_id="order_790")
    assert (order.status, order.payment_id) == (OrderStatus.LATE_PAYMENT, "pi_late")
    assert Task.objects.get(pk=task_id).status == "timeout"


# --------------------------------------------------------------------------------------------
# The receiver, the targets and the client refuse what they should (no worker needed)
# --------------------------------------------------------------------------------------------


def _signed(team: Team, event_id: str, body: bytes, secret: str | None = None) -> dict[str, str]:
    """The signature headers the service sends, made with the team's secrets (or ``secret``)."""
    secrets = [secret] if secret else team.signing_secrets(timezone.now())
    return signing.sign(secrets, event_id, body)


def _webhook_body(task_id: str, event_type: str = "task.completed") -> bytes:
    status = event_type.removeprefix("task.")
    return json.dumps({"event": event_type, "task": {"id": task_id, "status": status}}).encode()


def test_order_webhook_verifies_signatures_and_records_each_event_once(demo: Demo) -> None:
    client = Client()
    order = Order.objects.create(
        order_id="o1",
        task_id="0190d9a0-0000-7000-8000-000000000001",
        status=OrderStatus.AWAITING_PAYMENT,
    )
    body = _webhook_body(str(order.task_id))
    url = "/demo/api/order-webhook"

    unsigned = client.post(url, body, content_type="application/json")
    assert unsigned.status_code == 400
    forged = client.post(
        url,
        body,
        content_type="application/json",
        headers=_signed(demo.team, "evt_forged", body, secret="whsec_" + "A" * 44),
    )
    assert forged.status_code == 400
    refused = list(ReceivedEvent.objects.filter(verified=False).order_by("id"))
    assert [(e.event_id, e.verified) for e in refused] == [("", False), ("evt_forged", False)]
    assert all(e.refusal for e in refused)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.AWAITING_PAYMENT

    headers = _signed(demo.team, "evt_1", body)
    first = client.post(url, body, content_type="application/json", headers=headers)
    again = client.post(url, body, content_type="application/json", headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == {"received": True, "duplicate": True}
    event = ReceivedEvent.objects.get(verified=True)
    assert (event.event_id, event.event_type, event.deliveries) == ("evt_1", "task.completed", 2)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.PAID

    page = client.get("/demo/events/")
    assert page.status_code == 200
    assert "evt_1" in page.content.decode()


def test_targets_refuse_unsigned_callbacks(demo: Demo) -> None:
    client = Client()
    for path in ("convert-video", "start-review", "start-checkout"):
        response = client.post(
            f"/demo/api/{path}", {"videoId": "x"}, content_type="application/json"
        )
        assert response.status_code == 400, path
        assert client.get(f"/demo/api/{path}").status_code == 405
    assert not Conversion.objects.exists()
    assert not Review.objects.exists()


def test_html_forms_need_the_csrf_token(demo: Demo) -> None:
    review = Review.objects.create(
        document_id="d1", signal_token="a" * 64, status=ReviewStatus.IN_REVIEW
    )
    client = Client(enforce_csrf_checks=True)
    assert (
        client.post(f"/demo/reviews/{review.pk}/decision", {"decision": "approve"}).status_code
        == 403
    )
    assert client.post("/demo/client/start-review", {"documentId": "d2"}).status_code == 403
    assert Review.objects.get(pk=review.pk).status == ReviewStatus.IN_REVIEW
    assert not Review.objects.filter(document_id="d2").exists()


def test_json_client_needs_the_demo_key(demo: Demo) -> None:
    url = f"{demo.base}/demo/api/client/start-review"
    body = {"documentId": "doc_1"}
    assert requests.post(url, json=body, timeout=30).status_code == 401
    wrong = requests.post(url, json=body, headers={"Authorization": "Bearer aq_wrong"}, timeout=30)
    assert wrong.status_code == 401
    invalid = requests.post(
        url,
        json={"documentId": "no spaces"},
        headers={"Authorization": f"Bearer {demo.key}"},
        timeout=30,
    )
    assert invalid.status_code == 400
    assert "documentId" in invalid.json()["fields"]
    assert not Task.objects.exists()


def test_stripe_webhook_answers(demo: Demo) -> None:
    client = Client()
    url = "/demo/api/stripe-webhook"
    ignored = client.post(url, {"type": "charge.refunded"}, content_type="application/json")
    assert ignored.json() == {"received": True, "ignored": "charge.refunded"}
    assert client.post(url, b"{", content_type="application/json").status_code == 400
    assert (
        client.post(
            url, {"type": "payment_intent.succeeded"}, content_type="application/json"
        ).status_code
        == 400
    )
    unknown = client.post(url, _stripe_event("pi_1", "nope"), content_type="application/json")
    assert unknown.status_code == 404
    Order.objects.create(order_id="o2")
    tokenless = client.post(url, _stripe_event("pi_1", "o2"), content_type="application/json")
    assert tokenless.status_code == 409


def test_review_decision_refused_for_a_task_no_longer_waiting(demo: Demo, settings: Any) -> None:
    """The signal is refused (here: the token is unknown to the service): the review closes
    and the page says why. Signals need no API key, so none is configured here."""
    settings.DEMO_API_KEY = ""
    review = Review.objects.create(
        document_id="d3", signal_token="b" * 64, status=ReviewStatus.IN_REVIEW
    )
    response = demo.form(f"/demo/reviews/{review.pk}/decision", {"decision": "reject"})
    assert response.status_code == 200
    assert "was refused: HTTP 404" in response.text
    assert Review.objects.get(pk=review.pk).status == ReviewStatus.CLOSED


def test_demo_page_explains_a_missing_api_key(demo: Demo, settings: Any) -> None:
    settings.DEMO_API_KEY = ""
    page = requests.get(f"{demo.base}/demo/", timeout=30)
    assert "DEMO_API_KEY is not set" in page.text
    response = demo.form("/demo/client/start-review", {"documentId": "doc_1"})
    assert "DEMO_API_KEY is not set" in response.text
    assert not Task.objects.exists()


@pytest.mark.worker
@pytest.mark.parametrize(
    ("prompt", "status"), [("a cat on a skateboard", "completed"), ("please fail", "failed")]
)
def test_fake_provider_is_polled_until_its_job_ends(
    demo: Demo, celery_worker: Worker, prompt: str, status: str
) -> None:
    created = demo.api(
        "POST",
        "/v1/tasks",
        {
            "targetUrl": f"{demo.base}/demo/api/provider/jobs",
            "payload": {"prompt": prompt},
            "provider": "replicate",
            "pollConfig": {"interval": 1},
        },
    )
    assert created.status_code == 201, created.text
    task = demo.poll(created.json()["task"]["id"], *TERMINAL)
    assert task["status"] == status
    assert task["pollCount"] >= 2  # "starting", then "processing" before the job ends
    if status == "completed":
        assert task["result"]["video"].endswith(".mp4")
    else:
        assert task["error"] == "the prompt was refused by the safety filter"


def test_fake_provider_refuses_an_unknown_job(demo: Demo) -> None:
    answer = requests.get(f"{demo.base}/demo/api/provider/jobs/nope", timeout=30)
    assert answer.status_code == 404
