"""A fake AI provider, for the two ways a long third-party job ends (README "Third-party async
jobs"): the service polls it, or it calls the task's one-time callback URL.

- ``POST /demo/api/provider/jobs`` submits a job (a JSON object with a ``prompt``, or a text
  body that is the prompt) and answers like Replicate does: the job id and ``urls.get``, its
  status URL. With a ``webhook`` in a JSON body (the task's
  ``{asyncqueue_callback_url}``), the provider also POSTs the finished job there a moment
  later.
- ``GET /demo/api/provider/jobs/<id>`` answers ``starting``, then ``processing``, then
  ``succeeded`` with the output once ``JOB_SECONDS`` have passed since the submit (a few polls
  at one second each). A job whose prompt contains "fail" ends ``failed`` with an error.

Stateless: the job id carries its submit time and outcome, so any web process can answer.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import urllib.request
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

logger = logging.getLogger(__name__)

#: Seconds a job runs before its status URL says ``succeeded``.
JOB_SECONDS = 3.0
#: Seconds after the submit at which the provider calls a job's webhook.
WEBHOOK_DELAY = 1.0


def _job(job_id: str, request: HttpRequest) -> dict[str, Any]:
    started_ms, outcome, _ = job_id.split("-", 2)
    age = time.time() - int(started_ms) / 1000
    job: dict[str, Any] = {
        "id": job_id,
        "urls": {"get": request.build_absolute_uri(reverse("demo:provider-job", args=[job_id]))},
    }
    if age < JOB_SECONDS / 2:
        return {**job, "status": "starting"}
    if age < JOB_SECONDS:
        return {**job, "status": "processing"}
    if outcome == "f":
        return {**job, "status": "failed", "error": "the prompt was refused by the safety filter"}
    return {**job, "status": "succeeded", "output": {"video": f"https://cdn.example/{job_id}.mp4"}}


def _call_back(url: str, job: dict[str, Any]) -> None:
    time.sleep(WEBHOOK_DELAY)
    body = json.dumps({**job, "status": "succeeded", "output": {"video": "done.mp4"}}).encode()
    call = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(call, timeout=10) as answer:
            logger.info("Fake provider called back %s: %s", job["id"], answer.status)
    except OSError:
        logger.warning("Fake provider could not call back %s", job["id"], exc_info=True)


@csrf_exempt
@require_POST
def submit(request: HttpRequest) -> JsonResponse:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:  # a text body is the prompt itself
        data = {"prompt": request.body.decode("utf-8", errors="replace")}
    if not isinstance(data, dict):
        return JsonResponse({"error": "the body must be a JSON object or text"}, status=400)
    outcome = "f" if "fail" in str(data.get("prompt", "")) else "s"
    job_id = f"{int(time.time() * 1000)}-{outcome}-{secrets.token_hex(4)}"
    job = _job(job_id, request)
    webhook = data.get("webhook")
    if isinstance(webhook, str) and webhook.startswith(("http://", "https://")):
        threading.Thread(target=_call_back, args=(webhook, job), daemon=True).start()
    return JsonResponse(job, status=201)


@require_GET
def job(request: HttpRequest, job_id: str) -> JsonResponse:
    if job_id.count("-") < 2 or not job_id.split("-", 1)[0].isdigit():
        return JsonResponse({"error": "no such job"}, status=404)
    return JsonResponse(_job(job_id, request))
