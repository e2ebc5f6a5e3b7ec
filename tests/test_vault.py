"""The Token Vault: encryption at rest and key rotation (``vault.py``, ``services/vault.py``),
``/v1/tokens`` (shapes, team isolation, bad input), token references in task headers (checked
at create, replaced only on the wire), revocation mid-life, the key checks and the rotation
command, and the admin page (names and dates only)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient

from asyncqueue_django import checks, http, outbound, services, tokens, vault
from asyncqueue_django.exceptions import TokenRevoked, VaultNotConfigured
from asyncqueue_django.http import CallResult
from asyncqueue_django.models import Attempt, Task, Team, VaultToken
from asyncqueue_django.services import TaskSpec
from tests.worker import Worker, wait_for

SECRET = "Bearer sk_live_the-vault-secret-0123456789"
TARGET = "http://127.0.0.1:9/run"


@contextmanager
def vault_keys(*keys: str) -> Iterator[None]:
    with override_settings(ASYNCQUEUE={**settings.ASYNCQUEUE, "VAULT_KEYS": list(keys)}):
        yield


def other_client() -> APIClient:
    other = services.get_or_create_team("globex")[0]
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {services.create_api_key(other).raw_key}")
    return c


def new_token(client: APIClient, name: str = "stripe", value: str = SECRET) -> dict[str, Any]:
    response = client.post("/v1/tokens", {"name": name, "value": value}, format="json")
    assert response.status_code == 201, response.content
    token: dict[str, Any] = response.json()["token"]
    return token


# --------------------------------------------------------------------------- encryption


def test_values_are_encrypted_and_read_back() -> None:
    ciphertext = vault.encrypt(SECRET)
    assert SECRET not in ciphertext
    assert vault.decrypt(ciphertext) == SECRET
    assert vault.encrypt(SECRET) != ciphertext  # a fresh IV every time


def test_old_keys_decrypt_until_removed() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with vault_keys(old):
        written = vault.encrypt(SECRET)
    with vault_keys(new, old):
        assert vault.decrypt(written) == SECRET
        rotated = vault.rotate(written)
    with vault_keys(new):
        assert vault.decrypt(rotated) == SECRET
        with pytest.raises(InvalidToken):
            vault.decrypt(written)


def test_without_keys_debug_uses_a_development_key_and_production_refuses() -> None:
    with vault_keys(), override_settings(DEBUG=True):
        assert vault.decrypt(vault.encrypt("x")) == "x"
    with vault_keys(), override_settings(DEBUG=False), pytest.raises(VaultNotConfigured):
        vault.encrypt("x")


def test_system_checks_warn_of_a_missing_key_and_refuse_a_malformed_one() -> None:
    with vault_keys(), override_settings(DEBUG=False):
        assert [e.id for e in checks.check_vault_key()] == ["asyncqueue.W003"]
    with vault_keys(), override_settings(DEBUG=True):
        assert checks.check_vault_key() == []
    assert checks.check_vault_key() == []
    with vault_keys("not-a-key"):
        errors = checks.check_settings()
    assert [e.id for e in errors] == ["asyncqueue.E011"]
    assert "not-a-key" not in errors[0].msg  # a key is never echoed
    with vault_keys(Fernet.generate_key().decode(), Fernet.generate_key().decode()):
        assert [e.id for e in checks.check_settings() if e.id != "asyncqueue.W001"] == []


def test_token_ids_and_references() -> None:
    token_id = tokens.new_vault_token_id()
    assert tokens.is_vault_token_id(token_id)
    assert not tokens.is_vault_token_id("Bearer " + token_id)
    assert not tokens.is_vault_token_id("tok_")
    assert tokens.vault_references({"A": token_id, "B": "plain"}) == {"A": token_id}


# --------------------------------------------------------------------------- /v1/tokens


def test_create_list_and_revoke(client: APIClient, team: Team) -> None:
    created = new_token(client)
    assert set(created) == {"id", "name", "createdAt"}
    assert created["id"].startswith("tok_")
    assert created["name"] == "stripe"
    assert created["createdAt"].endswith("Z")
    row = VaultToken.objects.get(pk=created["id"])
    assert row.team == team
    assert SECRET not in row.ciphertext
    assert vault.decrypt(row.ciphertext) == SECRET

    second = new_token(client, "github", "ghp_abc")
    listed = client.get("/v1/tokens").json()
    assert listed == {"tokens": [second, created]}  # newest first

    revoked = client.delete(f"/v1/tokens/{created['id']}")
    assert revoked.status_code == 200
    body = revoked.json()["token"]
    assert set(body) == {"id", "name", "revokedAt"}
    assert body["revokedAt"].endswith("Z")
    assert client.get("/v1/tokens").json() == {"tokens": [second]}
    # Revoking again answers the same (the first revocation time is kept).
    assert client.delete(f"/v1/tokens/{created['id']}/").json()["token"] == body
    assert SECRET not in json.dumps([listed, body])


def test_teams_do_not_see_each_others_tokens(client: APIClient) -> None:
    mine = new_token(client)
    other = other_client()
    assert other.get("/v1/tokens").json() == {"tokens": []}
    response = other.delete(f"/v1/tokens/{mine['id']}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert VaultToken.objects.get(pk=mine["id"]).revoked_at is None
    # Another team's token cannot be used in a header either.
    refused = other.post(
        "/v1/tasks",
        {"targetUrl": TARGET, "headers": {"Authorization": mine["id"]}},
        format="json",
    )
    assert refused.status_code == 400
    assert "does not exist" in refused.json()["fields"]["headers.Authorization"]


def test_tokens_need_an_api_key(anon: APIClient, db: Any) -> None:
    assert anon.get("/v1/tokens").status_code == 401
    assert anon.post("/v1/tokens", {"name": "a", "value": "b"}, format="json").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "a"}, "value"),
        ({"value": "v"}, "name"),
        ({"name": "", "value": "v"}, "name"),
        ({"name": "x" * 101, "value": "v"}, "name"),
        ({"name": "a", "value": ""}, "value"),
        ({"name": "a", "value": 5}, "value"),
        ({"name": "a", "value": "line\nbreak-secret"}, "value"),
        ({"name": "a", "value": " padded-secret "}, "value"),
        ({"name": "a", "value": "ünïcødé-secret€"}, "value"),
        ({"name": "a", "value": "v" * 8193}, "value"),
        ({"name": "a", "value": "v", "extra": 1}, "extra"),
    ],
)
def test_bad_tokens_are_refused_without_echoing_the_value(
    client: APIClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/tokens", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]
    value = body.get("value")
    if isinstance(value, str) and len(value) > 3:
        assert value not in response.content.decode()
    assert not VaultToken.objects.exists()


def test_a_list_body_and_unknown_ids_are_clear_errors(client: APIClient) -> None:
    assert client.post("/v1/tokens", [1], format="json").status_code == 400
    assert client.delete("/v1/tokens/tok_nope").status_code == 404
    assert client.delete("/v1/tokens/" + "x" * 50).status_code == 404
    assert client.delete("/v1/tokens/tok_a%00b").status_code == 404
    assert client.delete("/v1/tokens/tok_%C3%A9").status_code == 404


def test_without_a_key_in_production_the_vault_answers_503(client: APIClient) -> None:
    with vault_keys(), override_settings(DEBUG=False):
        response = client.post("/v1/tokens", {"name": "a", "value": "b"}, format="json")
    assert response.status_code == 503
    assert response.json()["code"] == "vault_not_configured"


# --------------------------------------------------------------------------- references


def test_a_header_naming_a_token_is_checked_at_create(client: APIClient) -> None:
    token = new_token(client)
    ok = client.post(
        "/v1/tasks",
        {"targetUrl": TARGET, "delay": 3600, "headers": {"Authorization": token["id"]}},
        format="json",
    )
    assert ok.status_code == 201
    # The task keeps the id, never the secret.
    assert Task.objects.get(pk=ok.json()["task"]["id"]).headers == {"Authorization": token["id"]}

    for value, reason in ((tokens.new_vault_token_id(), "does not exist"), ("tok_x", "exist")):
        bad = client.post(
            "/v1/tasks", {"targetUrl": TARGET, "headers": {"X-Key": value}}, format="json"
        )
        assert bad.status_code == 400
        body = bad.json()
        assert body["code"] == "validation_error"
        assert reason in body["fields"]["headers.X-Key"]
        assert "X-Key" in body["error"]

    client.delete(f"/v1/tokens/{token['id']}")
    revoked = client.post(
        "/v1/tasks", {"targetUrl": TARGET, "headers": {"Authorization": token["id"]}}, format="json"
    )
    assert revoked.status_code == 400
    assert "revoked" in revoked.json()["fields"]["headers.Authorization"]
    assert Task.objects.count() == 1


def test_the_secret_is_put_in_only_when_the_request_is_built(team: Team) -> None:
    token = services.create_token(team, "stripe", SECRET)
    task = services.create_task(
        team,
        TaskSpec(target_url=TARGET, headers={"Authorization": token.pk, "X-Plain": "p"}),
    ).task
    headers, _ = outbound.build_callback(task)
    assert headers["Authorization"] == SECRET
    assert headers["X-Plain"] == "p"
    task.refresh_from_db()
    assert task.headers["Authorization"] == token.pk

    services.revoke_token(team, token.pk)
    with pytest.raises(TokenRevoked) as caught:
        outbound.build_callback(task)
    assert "Authorization" in caught.value.message
    assert SECRET not in caught.value.message


def test_rotation_re_encrypts_every_value_under_the_newest_key(team: Team) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with vault_keys(old):
        ids = [services.create_token(team, f"t{i}", f"{SECRET}-{i}").pk for i in range(3)]
        services.revoke_token(team, ids[2])
        before = dict(VaultToken.objects.values_list("pk", "ciphertext"))
    with vault_keys(new, old):
        out = io.StringIO()
        call_command("asyncqueue_rotate_vault_key", "--dry-run", stdout=out)
        assert "3 vault token(s) decrypt" in out.getvalue()
        assert dict(VaultToken.objects.values_list("pk", "ciphertext")) == before
        call_command("asyncqueue_rotate_vault_key", stdout=out)
        assert "Re-encrypted 3" in out.getvalue()
    with vault_keys(new):  # the old key is gone: everything still reads
        for i, pk in enumerate(ids):
            row = VaultToken.objects.get(pk=pk)
            assert row.ciphertext != before[pk]
            assert vault.decrypt(row.ciphertext) == f"{SECRET}-{i}"


def test_rotation_stops_on_a_value_no_key_reads(team: Team) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with vault_keys(old):
        token = services.create_token(team, "t", SECRET)
    with vault_keys(new), pytest.raises(CommandError, match=token.pk):
        call_command("asyncqueue_rotate_vault_key", stdout=io.StringIO())
    with vault_keys(), override_settings(DEBUG=False), pytest.raises(CommandError):
        call_command("asyncqueue_rotate_vault_key", stdout=io.StringIO())


# --------------------------------------------------------------------------- revocation


def test_revoking_a_token_fails_the_next_attempt_without_retry(team: Team) -> None:
    """A task that used the token once (and is due again after a 503) fails with a clear error
    once the token is revoked, however many retries it had left."""
    from asyncqueue_django.tasks import execute_task

    token = services.create_token(team, "stripe", SECRET)
    task = services.create_task(
        team,
        TaskSpec(target_url=TARGET, headers={"Authorization": token.pk}, max_retries=5),
    ).task
    claimed = services.claim_task(task.pk, "w")
    assert claimed is not None
    services.finish_attempt(claimed, CallResult(status_code=503), worker="w")
    services.revoke_token(team, token.pk)
    Task.objects.filter(pk=task.pk).update(next_attempt_at=task.created_at)

    assert execute_task(str(task.pk)) == "failed"
    task.refresh_from_db()
    assert task.error.startswith("Header 'Authorization' refers to vault token")
    assert "revoked" in task.error
    assert "(not retried)" in task.error
    assert SECRET not in task.error
    assert [a.outcome for a in Attempt.objects.filter(task=task)] == ["retrying", "failed"]


# --------------------------------------------------------------------------- admin


@pytest.fixture
def admin_client(db: Any) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.test", "pw")
    c = Client()
    c.force_login(user)
    return c


def test_admin_shows_names_and_dates_only_and_revokes(admin_client: Client, team: Team) -> None:
    token = services.create_token(team, "stripe-live", SECRET)
    page = admin_client.get("/admin/asyncqueue/vaulttoken/").content.decode()
    assert "stripe-live" in page
    assert token.pk in page
    detail = admin_client.get(f"/admin/asyncqueue/vaulttoken/{token.pk}/change/")
    assert detail.status_code == 200
    row = VaultToken.objects.get(pk=token.pk)
    for shown in (page, detail.content.decode()):
        assert SECRET not in shown
        assert row.ciphertext not in shown
    assert admin_client.get("/admin/asyncqueue/vaulttoken/add/").status_code == 403

    response = admin_client.post(
        "/admin/asyncqueue/vaulttoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
        follow=True,
    )
    assert "Revoked 1 token(s)." in response.content.decode()
    assert VaultToken.objects.get(pk=token.pk).revoked_at is not None


# --------------------------------------------------------------------------- on the wire


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_target_receives_the_secret_and_nothing_stored_has_it(
    celery_worker: Worker, httpserver: HTTPServer
) -> None:
    team = services.get_or_create_team("wire")[0]
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {services.create_api_key(team).raw_key}")
    token = new_token(c)
    httpserver.expect_request("/charge").respond_with_json({"echo": "ok"})
    httpserver.expect_request("/hook").respond_with_data("ok")
    created = c.post(
        "/v1/tasks",
        {
            "targetUrl": httpserver.url_for("/charge"),
            "headers": {"Authorization": token["id"]},
            "onCompleteUrl": httpserver.url_for("/hook"),
        },
        format="json",
    ).json()["task"]

    wait_for(lambda: len(httpserver.log) >= 2)
    charge = next(r for r, _ in httpserver.log if r.path == "/charge")
    hook = next(r for r, _ in httpserver.log if r.path == "/hook")
    assert charge.headers["Authorization"] == SECRET
    assert SECRET not in hook.get_data(as_text=True)
    task = c.get(f"/v1/tasks/{created['id']}").json()["task"]
    assert task["status"] == "completed"
    assert SECRET not in json.dumps(task)
    assert SECRET not in celery_worker.log()
    for model in (Task, Attempt, VaultToken):
        assert SECRET not in repr(list(model.objects.values()))


def test_a_vault_secret_does_not_follow_a_redirect_to_another_origin(team: Team) -> None:
    """Even under a name that may otherwise cross origins (content negotiation)."""
    token = services.create_token(team, "k", SECRET)
    task = services.create_task(
        team, TaskSpec(target_url=TARGET, headers={"Accept": token.pk, "Accept-Language": "en"})
    ).task
    names = outbound.vault_headers(task)
    assert names == frozenset({"accept"})
    headers, _ = outbound.build_callback(task)
    same = http.headers_for_redirect(headers, "https://a.test/x", "https://a.test/y", names)
    assert same["Accept"] == SECRET
    moved = http.headers_for_redirect(headers, "https://a.test/x", "https://b.test/y", names)
    assert "Accept" not in moved
    assert moved["Accept-Language"] == "en"
