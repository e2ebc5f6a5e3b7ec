"""The Token Vault: a team's secrets, encrypted at rest, that task headers refer to by id.

A header whose value is a token id (``tok_…``) is checked when the task is created (the token
must exist, belong to the team and not be revoked) and replaced by the secret only when a
worker builds the request (:func:`reveal_headers`, called by ``outbound.build_callback``). The
value is stored only as a Fernet ciphertext (``vault.py``); it never appears in an answer, the
admin, a log line, a stored attempt or a webhook body: tasks keep the id, not the secret.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from asyncqueue_django import tokens, validators, vault
from asyncqueue_django.exceptions import InvalidTokenReference, TokenNotFound, TokenRevoked
from asyncqueue_django.models import Team, VaultToken

logger = logging.getLogger(__name__)

#: Rows re-encrypted per transaction by :func:`rotate_keys`.
ROTATE_BATCH = 500


def create_token(team: Team, name: str, value: str) -> VaultToken:
    """Store ``value`` for ``team`` under ``name``, encrypted with the newest vault key.

    Raises :class:`~asyncqueue_django.validators.InvalidInput` for a bad name or value, and
    :class:`~asyncqueue_django.exceptions.VaultNotConfigured` when there is no key."""
    validators.check_vault_name(name)
    validators.check_vault_value(value)
    token = VaultToken.objects.create(team=team, name=name, ciphertext=vault.encrypt(value))
    logger.info("Vault token %s created for team %s", token.pk, team.pk)
    return token


def list_tokens(team: Team) -> Any:
    """The team's tokens that are not revoked, newest first (without their ciphertext)."""
    return (
        VaultToken.objects.for_team(team).active().defer("ciphertext").order_by("-created_at", "id")
    )


def revoke_token(team: Team, token_id: str, now: datetime | None = None) -> VaultToken:
    """Revoke the team's token ``token_id`` → ``revoked_at`` set (kept if it already was).

    Tasks that refer to it fail their next attempt without retry. Raises
    :class:`TokenNotFound` for an unknown id or another team's token."""
    if not tokens.is_vault_token_id(token_id):
        raise TokenNotFound()  # not an id's shape: no query (a NUL would upset PostgreSQL)
    now = now or timezone.now()
    VaultToken.objects.filter(pk=token_id, team=team, revoked_at__isnull=True).update(
        revoked_at=now
    )
    token = VaultToken.objects.for_team(team).defer("ciphertext").filter(pk=token_id).first()
    if token is None:
        raise TokenNotFound()
    logger.info("Vault token %s of team %s revoked", token.pk, team.pk)
    return token


def invalid_references(
    team: Team, headers_list: Sequence[dict[str, str]]
) -> dict[int, dict[str, str]]:
    """For each headers dict (by position), the headers that name a token id that is not a
    live token of ``team``, with why: ``{index: {header: message}}``. One query for all."""
    refs = [tokens.vault_references(headers) for headers in headers_list]
    wanted = {token_id for r in refs for token_id in r.values()}
    if not wanted:
        return {}
    rows = dict(
        VaultToken.objects.for_team(team).filter(pk__in=wanted).values_list("pk", "revoked_at")
    )
    problems: dict[int, dict[str, str]] = {}
    for index, r in enumerate(refs):
        for header, token_id in r.items():
            if token_id not in rows:
                message = f"Refers to vault token {token_id}, which does not exist."
            elif rows[token_id] is not None:
                message = f"Refers to vault token {token_id}, which was revoked."
            else:
                continue
            problems.setdefault(index, {})[header] = message
    return problems


def check_references(team: Team, headers: dict[str, str]) -> None:
    """Raise :class:`InvalidTokenReference` (400, naming the headers) unless every token id
    in ``headers`` is a live token of ``team``."""
    problems = invalid_references(team, [headers]).get(0)
    if problems:
        raise InvalidTokenReference({f"headers.{h}": m for h, m in problems.items()})


def reveal_headers(team_id: Any, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with each token id replaced by its secret, for the request being built (the
    result is sent and dropped, never stored). Raises :class:`TokenRevoked` when a token was
    revoked or deleted since the task was created."""
    refs = tokens.vault_references(headers)
    if not refs:
        return dict(headers)
    live = VaultToken.objects.filter(
        team_id=team_id, pk__in=set(refs.values()), revoked_at__isnull=True
    )
    rows = dict(live.values_list("pk", "ciphertext"))
    out = dict(headers)
    for header, token_id in refs.items():
        if token_id not in rows:
            raise TokenRevoked(header, token_id)
        out[header] = vault.decrypt(rows[token_id])
    return out


class UndecryptableToken(Exception):
    """A stored value that none of the configured keys decrypts (its key was removed)."""

    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        super().__init__(
            f"Vault token {token_id} cannot be decrypted with any key in VAULT_KEYS "
            "(was the key that wrote it removed?)"
        )


def rotate_keys(dry_run: bool = False) -> int:
    """Re-encrypt every stored value (revoked ones too) under the newest key of
    ``VAULT_KEYS``; returns how many. Afterwards the older keys can be removed. Raises
    :class:`UndecryptableToken` (nothing of that batch written) for a value no key reads.

    In batches by id, each in its own transaction, so a large vault does not hold one long
    transaction; a value written meanwhile is already under the newest key."""
    done = 0
    last = ""
    while True:
        with transaction.atomic():  # row locks: a concurrent revoke waits for this batch
            batch = list(
                VaultToken.objects.select_for_update()
                .filter(pk__gt=last)
                .order_by("pk")
                .values_list("pk", "ciphertext")[:ROTATE_BATCH]
            )
            if not batch:
                break
            for pk, ciphertext in batch:
                try:
                    rotated = vault.rotate(ciphertext)  # a dry run checks every value decrypts
                except vault.InvalidToken:
                    raise UndecryptableToken(pk) from None
                if not dry_run:
                    VaultToken.objects.filter(pk=pk).update(ciphertext=rotated)
            done += len(batch)
            last = batch[-1][0]
    if not dry_run:
        logger.info("Re-encrypted %s vault token(s) under the newest key", done)
    return done
