"""Secrets (``tokens.py``): formats, digests and constant-time comparison."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import subprocess
import sys
from typing import Any

import pytest

from asyncqueue_django import tokens


def test_signal_token_is_64_lowercase_hex() -> None:
    token = tokens.new_signal_token()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert tokens.is_signal_token(token) is True


def test_signal_tokens_are_unique() -> None:
    assert len({tokens.new_signal_token() for _ in range(200)}) == 200


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a" * 63,
        "a" * 65,
        "A" * 64,
        "g" * 64,
        " " + "a" * 63,
        "0x" + "a" * 62,
        "a" * 64 + "\n",
    ],
)
def test_is_signal_token_refuses_other_shapes(value: str) -> None:
    assert tokens.is_signal_token(value) is False


def test_api_key_has_prefix_mode_and_visible_prefix() -> None:
    raw, visible = tokens.new_api_key("aq_")
    assert raw.startswith("aq_live_")
    # 32 random bytes as url-safe base64 without padding: 43 characters.
    assert re.fullmatch(r"aq_live_[A-Za-z0-9_\-]{43}", raw)
    assert visible == raw[: len("aq_live_") + tokens.VISIBLE_PREFIX_CHARS]
    assert len(visible) == 16


def test_api_key_custom_prefix_and_test_mode() -> None:
    raw, visible = tokens.new_api_key("acme_", "test")
    assert re.fullmatch(r"acme_test_[A-Za-z0-9_\-]{43}", raw)
    assert visible == raw[:18]


def test_api_keys_are_unique() -> None:
    assert len({tokens.new_api_key("aq_")[0] for _ in range(200)}) == 200


def test_webhook_secret_is_whsec_base64_of_at_least_24_bytes() -> None:
    secret = tokens.new_webhook_secret()
    assert secret.startswith("whsec_")
    raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert len(raw) >= 24
    assert len(raw) == 32
    assert tokens.new_webhook_secret() != secret


def test_digest_is_sha256_hex() -> None:
    assert (
        tokens.digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    token = tokens.new_signal_token()
    assert tokens.digest(token) == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", tokens.digest(token))


def test_digest_of_non_ascii_uses_utf8() -> None:
    assert tokens.digest("é") == hashlib.sha256("é".encode()).hexdigest()


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("same", "same", True),
        ("same", "samE", False),
        ("short", "longer", False),
        ("", "", True),
        ("", "x", False),
        ("é", "é", True),
        ("é", "e", False),
    ],
)
def test_constant_time_equals(a: str, b: str, expected: bool) -> None:
    assert tokens.constant_time_equals(a, b) is expected


def test_constant_time_equals_uses_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert tokens.constant_time_equals("x1", "x2") is False
    assert calls == [(b"x1", b"x2")]


def test_module_is_pure() -> None:
    """``tokens.py`` imports no Django, DRF or Celery (STYLE convention 5)."""
    code = (
        "import sys; import asyncqueue_django.tokens; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('django', 'rest_framework', 'celery')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
