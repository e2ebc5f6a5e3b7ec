"""The OpenAPI document: generated without warnings, served at /v1/schema, and true to the
server — every operation is fuzzed with schemathesis against the live app and each response is
checked against the schema (no 5xx, documented status codes, conforming bodies)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings
from drf_spectacular.drainage import GENERATOR_STATS
from hypothesis import HealthCheck, given, settings
from rest_framework.test import APIClient
from schemathesis.specs.openapi.checks import positive_data_acceptance

from asyncqueue_django import services
from asyncqueue_django.api.schema import SCHEMA_SETTINGS
from asyncqueue_django.models import Team

EXPECTED_PATHS = {
    "/v1/tasks": {"get", "post"},
    "/v1/tasks/batch": {"post"},
    "/v1/tokens": {"get", "post"},
    "/v1/tokens/{token_id}": {"delete"},
    "/v1/schedules": {"get", "post"},
    "/v1/schedules/{schedule_id}": {"get", "patch", "delete"},
    "/v1/schedules/{schedule_id}/pause": {"post"},
    "/v1/schedules/{schedule_id}/resume": {"post"},
    "/v1/tasks/{task_id}": {"get", "delete"},
    "/v1/tasks/{task_id}/cancel": {"post"},
    "/v1/tasks/{task_id}/retry": {"post"},
    "/v1/signals/{token}": {"post"},
    "/v1/signals/{token}/heartbeat": {"post"},
    "/v1/callbacks/{callback_id}": {"post"},
    "/v1/providers": {"get"},
    "/v1/queues": {"get"},
    "/v1/queues/{name}/pause": {"post"},
    "/v1/queues/{name}/resume": {"post"},
}


def _schema() -> dict[str, Any]:
    response = APIClient().get("/v1/schema")
    assert response.status_code == 200
    return dict(response.json())


def test_schema_is_generated_without_warnings_or_errors(db: Any) -> None:
    GENERATOR_STATS.reset()
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.settings import patched_settings

    with patched_settings(SCHEMA_SETTINGS):
        SchemaGenerator(urlconf="asyncqueue_django.urls").get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache, list(GENERATOR_STATS._warn_cache)
    assert not GENERATOR_STATS._error_cache, list(GENERATOR_STATS._error_cache)


def test_schema_lists_exactly_the_spec_paths(db: Any) -> None:
    paths = _schema()["paths"]
    assert {
        p: set(ops) & {"get", "post", "delete", "put", "patch"} for p, ops in paths.items()
    } == (EXPECTED_PATHS)


def test_every_operation_documents_its_errors(db: Any) -> None:
    paths = _schema()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            codes = set(operation["responses"])
            assert {"400", "404", "429"} & codes, (path, method)
            for code in codes - {"200", "201", "202"}:
                ref = operation["responses"][code]["content"]["application/json"]["schema"]
                assert ref == {"$ref": "#/components/schemas/Error"}, (path, method, code)


def test_schema_documents_camel_case_fields_and_the_three_pattern_examples(db: Any) -> None:
    schema = _schema()
    task = schema["components"]["schemas"]["Task"]["properties"]
    for name in (
        "targetUrl",
        "waitForSignal",
        "maxWaitTime",
        "onCompleteUrl",
        "retryCount",
        "nextAttemptAt",
        "waitDeadline",
        "createdAt",
        "completedAt",
    ):
        assert name in task
    create = schema["paths"]["/v1/tasks"]["post"]
    examples = create["requestBody"]["content"]["application/json"]["examples"]
    assert {"Polling-ConvertAVideo", "Signal-AHumanReview", "PaymentWithTimeout"} <= set(examples)
    assert schema["components"]["schemas"]["TaskCreateRequest"]["additionalProperties"] is False


def test_docs_page_points_at_the_schema(db: Any) -> None:
    response = APIClient().get("/v1/docs")
    assert response.status_code == 200
    assert b"/v1/schema" in response.content


def test_docs_page_loads_only_local_static_files(db: Any) -> None:
    """Swagger UI comes from drf-spectacular-sidecar's static files: every script, stylesheet
    and icon is a local static URL that exists, so /v1/docs works with the network cut."""
    from django.conf import settings
    from django.contrib.staticfiles import finders

    body = APIClient().get("/v1/docs").content.decode()
    urls = re.findall(r'(?:src|href)="([^"]+)"', body)
    assets = [u for u in urls if u != "/v1/schema"]
    assert len(assets) >= 3
    for url in assets:
        assert not re.match(r"^(?:[a-z]+:)?//", url, flags=re.IGNORECASE), url
        assert url.startswith("/" + settings.STATIC_URL.strip("/") + "/"), url
        path = url.split(settings.STATIC_URL.strip("/") + "/", 1)[1]
        assert finders.find(path), f"{path} is not in the static files"
    assert "cdn" not in body.lower()


# --------------------------------------------------------------------------------------------
# Fuzzing the live app against its own schema
# --------------------------------------------------------------------------------------------


def _live_schema() -> Any:
    # The schema endpoint touches no database: it can be read at collection time.
    return schemathesis.openapi.from_wsgi("/v1/schema", WSGIHandler())


OPERATIONS = {op.label: op for op in (r.ok() for r in _live_schema().get_all_operations())}


@pytest.fixture
def fuzz_key(transactional_db: Any) -> str:
    team: Team = services.get_or_create_team("fuzz")[0]
    return services.create_api_key(team, "fuzz").raw_key


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_fuzz_every_operation(label: str, fuzz_key: str) -> None:
    """Valid and invalid inputs alike: never a 5xx, only documented status codes, and every
    body conforms to the documented schema."""
    operation = OPERATIONS[label]
    headers = {"Authorization": f"Bearer {fuzz_key}"}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        # Not checked: that every schema-valid request is accepted. Rules OpenAPI cannot state
        # (the SSRF guard, payload-or-body, alias conflicts, caps read from settings) answer a
        # documented 400 for some schema-valid requests.
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    # The defaults (private targets refused), without rate limits; the vault keeps its key.
    fuzzing = {
        "RATE_LIMIT": None,
        "SIGNAL_RATE_LIMIT": None,
        "VAULT_KEYS": django_settings.ASYNCQUEUE["VAULT_KEYS"],
    }
    with override_settings(ASYNCQUEUE=fuzzing):
        run()


def test_every_operation_is_fuzzed() -> None:
    methods = {(label.split(" ", 1)[1], label.split(" ", 1)[0].lower()) for label in OPERATIONS}
    expected = {(path, method) for path, ms in EXPECTED_PATHS.items() for method in ms}
    assert methods == expected


# --------------------------------------------------------------------------------------------
# The constraints the server enforces, and the links between operations
# --------------------------------------------------------------------------------------------


def _parameter(schema: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    params = schema["paths"][path][method]["parameters"]
    found: dict[str, Any] = next(p for p in params if p["name"] == name)
    return found


def test_schema_declares_the_limits_the_server_enforces(db: Any) -> None:
    schema = _schema()
    status = _parameter(schema, "/v1/tasks", "get", "status")["schema"]
    assert re.fullmatch(status["pattern"], "pending,failed,")
    assert not re.fullmatch(status["pattern"], "complete")
    key = _parameter(schema, "/v1/tasks", "post", "Idempotency-Key")["schema"]
    assert (key["minLength"], key["maxLength"]) == (1, 255)
    components = schema["components"]["schemas"]
    assert components["HeartbeatRequest"]["properties"]["extendBy"]["maximum"] == 2_592_000
    create = components["TaskCreateRequest"]["properties"]
    assert create["timeout"]["maximum"] == 300
    assert create["maxRetries"]["maximum"] == 10
    assert create["headers"]["maxProperties"] == 50
    assert create["body"]["pattern"] == "^[^\\x00]*$"
    assert components["JSONValue"]["oneOf"][1] == {"type": "string", "pattern": "^[^\\x00]*$"}


def test_schema_limits_follow_the_settings(db: Any) -> None:
    with override_settings(ASYNCQUEUE={"MAX_WAIT_TIME": 3600, "QUEUES": ["default", "emails"]}):
        schema = _schema()
    components = schema["components"]["schemas"]
    assert components["HeartbeatRequest"]["properties"]["extendBy"]["maximum"] == 3600
    queue = components["TaskCreateRequest"]["properties"]["queue"]
    assert queue["enum"] == ["default", "emails"]


def test_schema_links_a_created_task_to_every_operation_on_it(db: Any) -> None:
    schema = _schema()
    links = schema["paths"]["/v1/tasks"]["post"]["responses"]["201"]["links"]
    targets = {link["operationId"]: link["parameters"] for link in links.values()}
    assert targets == {
        "getTask": {"task_id": "$response.body#/task/id"},
        "cancelTask": {"task_id": "$response.body#/task/id"},
        "deleteTask": {"task_id": "$response.body#/task/id"},
        "retryTask": {"task_id": "$response.body#/task/id"},
        "sendSignal": {"token": "$response.body#/signalToken"},
        "heartbeat": {"token": "$response.body#/signalToken"},
    }
    operation_ids = {
        op["operationId"]
        for item in schema["paths"].values()
        for method, op in item.items()
        if method != "parameters"
    }
    for path in schema["paths"].values():
        for op in path.values():
            for response in op.get("responses", {}).values():
                for link in response.get("links", {}).values():
                    assert link["operationId"] in operation_ids
