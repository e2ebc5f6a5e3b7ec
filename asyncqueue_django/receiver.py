"""Helpers for Django projects that *receive* asyncqueue webhooks and callbacks.

::

    from asyncqueue_django.receiver import verify_webhook

    @verify_webhook(secrets=lambda request: [settings.ASYNCQUEUE_WEBHOOK_SECRET])
    def task_finished(request):
        event = json.loads(request.body)
        ...
        return HttpResponse(status=204)

Either header format is accepted (Standard Webhooks or ``X-AsyncQueue-Signature``), compared
in constant time, within a 5-minute tolerance; anything missing, malformed, too old or too new
is refused (fail closed). Give the old and the new secret during a rotation.

This module needs only Django (no models, DRF or Celery), so a receiving project does not have
to install the app to use it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from asyncqueue_django import signing
from asyncqueue_django.signing import (
    DEFAULT_TOLERANCE,
    MalformedSignature,
    MissingSignature,
    SignatureError,
    SignatureMismatch,
    TimestampOutOfRange,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "MalformedSignature",
    "MissingSignature",
    "SignatureError",
    "SignatureMismatch",
    "TimestampOutOfRange",
    "verify",
    "verify_webhook",
]

logger = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., HttpResponse])
Secrets = Sequence[str] | Callable[[HttpRequest], Sequence[str]]


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Raise :class:`SignatureError` unless ``body`` carries a valid signature made with one of
    ``secrets`` (``whsec_…`` strings) within ``tolerance`` seconds of now.

    ``headers`` may be ``request.headers`` or any mapping (names in any case).
    """
    signing.verify(body, headers, secrets, tolerance=tolerance)


def verify_webhook(
    secrets: Secrets, *, tolerance: float = DEFAULT_TOLERANCE
) -> Callable[[View], View]:
    """View decorator: answer 400 ``{"error": "Invalid webhook signature"}`` unless the request
    is signed with one of ``secrets``.

    ``secrets`` is a list of ``whsec_…`` secrets, or a callable taking the request and
    returning one (read at request time, e.g. from settings or per tenant). The view is made
    CSRF-exempt: the signature is what authenticates the sender.
    """

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            keys = secrets(request) if callable(secrets) else secrets
            try:
                verify(request.body, request.headers, keys, tolerance=tolerance)
            except SignatureError as exc:
                # The reason is logged for the operator, not told to the caller.
                logger.warning("Refused a webhook on %s: %s", request.path, exc)
                return JsonResponse({"error": "Invalid webhook signature"}, status=400)
            return view(request, *args, **kwargs)

        return cast(View, csrf_exempt(wrapped))

    return decorator
