"""Teams, their API keys and their webhook secrets."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from asyncqueue_django import tokens
from asyncqueue_django.conf import app_settings
from asyncqueue_django.models import ApiKey, Team

logger = logging.getLogger(__name__)

API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    raw_key: str  # shown once, never stored


def get_or_create_team(name: str) -> tuple[Team, bool]:
    """The team called ``name``, created (with a fresh webhook secret) if it does not exist."""
    return Team.objects.get_or_create(name=name)


def rotate_webhook_secret(team: Team, now: datetime | None = None) -> str:
    """Give ``team`` a new webhook secret and return it.

    The previous secret keeps signing next to the new one for ``WEBHOOK_SECRET_OVERLAP``
    seconds, so receivers can switch without losing a request. Rotating again inside that
    window retires the oldest secret at once (only two ever sign). ``team`` is refreshed.
    """
    now = now or timezone.now()
    overlap = app_settings.WEBHOOK_SECRET_OVERLAP
    with transaction.atomic():
        # Row lock: two concurrent rotations must not both keep the same "previous" secret.
        current = Team.objects.select_for_update().get(pk=team.pk)
        new_secret = tokens.new_webhook_secret()
        Team.objects.filter(pk=team.pk).update(
            webhook_secret=new_secret,
            previous_webhook_secret=current.webhook_secret if overlap else "",
            previous_secret_expires_at=now + timedelta(seconds=overlap) if overlap else None,
        )
    team.refresh_from_db(
        fields=["webhook_secret", "previous_webhook_secret", "previous_secret_expires_at"]
    )
    logger.info("Rotated the webhook secret of team %s", team.pk)
    return new_secret


def create_api_key(team: Team, name: str = "") -> IssuedApiKey:
    """Issue a new key for ``team``. The raw key is returned once; only its digest is kept."""
    raw, prefix = tokens.new_api_key(app_settings.API_KEY_PREFIX)
    key = ApiKey.objects.create(team=team, name=name, prefix=prefix, digest=tokens.digest(raw))
    return IssuedApiKey(api_key=key, raw_key=raw)


def revoke_api_key(key: ApiKey, now: datetime | None = None) -> bool:
    """Revoke ``key``; False if it was already revoked. Refused from the next request on
    (a create checks the key in its own INSERT, so the authentication cache cannot let a
    revoked key write)."""
    now = now or timezone.now()
    for digest, (_, cached) in list(_recent.items()):
        if cached.pk == key.pk:
            _recent.pop(digest, None)
    return bool(ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now))


#: How long this process may reuse a key it has read, for requests whose write checks the
#: key again itself (a create). Every other request reads the key each time.
API_KEY_CACHE_SECONDS = 60.0

#: digest → (monotonic expiry, key with its team). Per process; a revocation elsewhere is
#: caught by the write's own check.
_recent: dict[str, tuple[float, ApiKey]] = {}
_RECENT_MAX = 10_000


def authenticate_api_key(
    raw_key: str, now: datetime | None = None, *, write_checks_key: bool = False
) -> ApiKey | None:
    """The active key matching ``raw_key`` (with its team), or None.

    ``write_checks_key``: the caller's write will check the key itself (``create_task`` with
    ``api_key``), so a key read in the last ``API_KEY_CACHE_SECONDS`` is reused without a
    query. ``last_used_at`` is refreshed at most once a minute, so authentication stays one
    read (or none) on the hot path.
    """
    digest = tokens.digest(raw_key)
    clock = time.monotonic()
    cached = _recent.get(digest) if write_checks_key else None
    key: ApiKey | None
    if cached is not None and cached[0] > clock:
        key = cached[1]
    else:
        key = ApiKey.objects.active().select_related("team").filter(digest=digest).first()
        if key is None:
            _recent.pop(digest, None)
            return None
        if len(_recent) >= _RECENT_MAX:
            _recent.clear()
        _recent[digest] = (clock + API_KEY_CACHE_SECONDS, key)
    now = now or timezone.now()
    if key.last_used_at is None or now - key.last_used_at > API_KEY_TOUCH_INTERVAL:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
