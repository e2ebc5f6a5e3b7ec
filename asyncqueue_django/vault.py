"""Token Vault encryption: Fernet (AES-128-CBC + HMAC-SHA256) under ``MultiFernet``.

Keys come from ``ASYNCQUEUE['VAULT_KEYS']``, newest first: the first key encrypts, every key
decrypts, so a new key can be put in front of the list while values written under the older
ones still read; ``asyncqueue_rotate_vault_key`` then re-encrypts every value under the newest
key, after which the old keys can be removed.

Without keys, DEBUG on: a key derived from ``SECRET_KEY`` (so ``./dev up`` works with no
setup; values written that way are development data). DEBUG off: :class:`VaultNotConfigured`,
and the system check ``asyncqueue.W003`` warns at start-up.

No models, DRF or Celery; settings are read when used.
"""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import VaultNotConfigured

__all__ = [
    "InvalidToken",
    "decrypt",
    "encrypt",
    "generate_key",
    "key_problem",
    "keys",
    "rotate",
]


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 of 32 bytes), for ``VAULT_KEYS``."""
    return Fernet.generate_key().decode("ascii")


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be a Fernet key, or None."""
    if not isinstance(key, str):
        return f"must be a string, not {type(key).__name__}"
    try:
        Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return "is not a Fernet key (url-safe base64 of 32 bytes)"
    return None


def _development_key() -> str:
    digest = hashlib.sha256(b"asyncqueue-vault:" + str(settings.SECRET_KEY).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def keys() -> tuple[str, ...]:
    """The keys in force, newest first (see the module docstring for the no-key case)."""
    configured = tuple(app_settings.VAULT_KEYS)
    if configured:
        return configured
    if settings.DEBUG:
        return (_development_key(),)
    raise VaultNotConfigured()


@functools.lru_cache(maxsize=8)
def _fernet(key_list: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode("ascii")) for k in key_list])


def encrypt(value: str) -> str:
    """``value`` encrypted under the newest key (a Fernet token, ASCII)."""
    return _fernet(keys()).encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(ciphertext: str) -> str:
    """The value of ``ciphertext``, under whichever configured key wrote it. Raises
    :class:`InvalidToken` if none of them did (a key was removed too early)."""
    return _fernet(keys()).decrypt(ciphertext.encode("ascii")).decode("utf-8")


def rotate(ciphertext: str) -> str:
    """``ciphertext`` re-encrypted under the newest key (same value, same timestamp)."""
    return _fernet(keys()).rotate(ciphertext.encode("ascii")).decode("ascii")
