"""Domain errors carry their own HTTP status; the API answers each with it."""

from __future__ import annotations

import pytest
from rest_framework.exceptions import ValidationError

from asyncqueue_django import exceptions
from asyncqueue_django.api.exceptions import exception_handler

EXPECTED = {
    exceptions.ApiKeyRevoked: (401, "authentication_failed"),
    exceptions.TaskNotFound: (404, "not_found"),
    exceptions.SignalTokenNotFound: (404, "not_found"),
    exceptions.WebhookNotFound: (404, "not_found"),
    exceptions.IdempotencyConflict: (409, "idempotency_conflict"),
    exceptions.AlreadySignalled: (409, "already_signalled"),
    exceptions.WebhookInFlight: (409, "webhook_in_flight"),
    exceptions.TokenNotFound: (404, "not_found"),
    exceptions.VaultNotConfigured: (503, "vault_not_configured"),
    exceptions.CallbackNotFound: (404, "not_found"),
    exceptions.CallbackUrlNotConfigured: (503, "callback_url_not_configured"),
    exceptions.ScheduleNotFound: (404, "not_found"),
    exceptions.ScheduleLimitReached: (409, "schedule_limit_reached"),
    exceptions.TestKeyCannotChangeLive: (403, "test_key_cannot_change_live"),
}


def all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= all_subclasses(sub)
    return found


def test_every_domain_error_is_listed_here() -> None:
    listed = set(EXPECTED) | {
        exceptions.InvalidTransition,
        exceptions.InvalidFields,
        exceptions.InvalidTokenReference,
        exceptions.InvalidScheduleInput,
        exceptions.TokenRevoked,
    }
    assert all_subclasses(exceptions.ServiceError) == listed


@pytest.mark.parametrize("error", sorted(EXPECTED, key=lambda e: e.__name__))
def test_the_api_answers_each_domain_error_with_its_own_status(error: type) -> None:
    response = exception_handler(error(), {})
    assert response is not None
    assert (response.status_code, response.data["code"]) == EXPECTED[error]
    assert response.data["error"] == error.message


def test_invalid_transition_is_409_naming_the_status() -> None:
    response = exception_handler(exceptions.InvalidTransition("cancel", "completed"), {})
    assert response is not None
    assert response.status_code == 409
    assert response.data == {
        "error": "Cannot cancel this task: it has completed",
        "code": "invalid_status",
        "status": "completed",
    }


def test_an_invalid_token_reference_is_400_naming_the_header() -> None:
    error = exceptions.InvalidTokenReference({"headers.X-Key": "Refers to vault token tok_a…"})
    response = exception_handler(error, {})
    assert response is not None
    assert response.status_code == 400
    assert response.data["code"] == "validation_error"
    assert response.data["fields"] == {"headers.X-Key": "Refers to vault token tok_a…"}
    assert "headers.X-Key" in response.data["error"]


def test_an_invalid_schedule_is_400_naming_the_fields() -> None:
    error = exceptions.InvalidScheduleInput({"cron": "Minute 61 is out of range 0-59."})
    response = exception_handler(error, {})
    assert response is not None
    assert (response.status_code, response.data["code"]) == (400, "validation_error")
    assert response.data["fields"] == {"cron": "Minute 61 is out of range 0-59."}


def test_a_revoked_token_names_the_header_and_the_token() -> None:
    error = exceptions.TokenRevoked("Authorization", "tok_abc")
    assert error.message == (
        "Header 'Authorization' refers to vault token tok_abc, which was revoked"
    )


def test_drf_errors_are_not_domain_errors() -> None:
    assert not isinstance(ValidationError("x"), exceptions.ServiceError)
