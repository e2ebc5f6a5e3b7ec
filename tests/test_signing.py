"""``signing.py``: both signature formats, known answers, rotation, and verification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from asyncqueue_django import signing, tokens

# A fixed secret in the Standard Webhooks form (the one in Standard Webhooks' own test vectors).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_" + base64.b64encode(b"another secret, 24+ bytes long").decode()
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'


def _hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


# ---------------------------------------------------------------- known answers


def test_standard_webhooks_known_answer() -> None:
    """The Standard Webhooks specification's published test vector."""
    headers = signing.sign([SECRET], MSG_ID, BODY, timestamp=TIMESTAMP)
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-timestamp"] == "1614265330"


def test_standard_webhooks_signature_is_hmac_of_id_timestamp_body() -> None:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = _b64(key, f"{MSG_ID}.{TIMESTAMP}.".encode() + BODY)
    assert signing.standard_signature(SECRET, MSG_ID, TIMESTAMP, BODY) == expected


def test_asyncqueue_known_answer() -> None:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">``, keyed with the secret string."""
    expected = _hex(SECRET.encode(), b"1614265330." + BODY)
    assert expected == "2e37df5d4a028c51a7f3133d64ae1e300d2c2c900f1b1d49d4369ad2530f8964"
    headers = signing.sign([SECRET], MSG_ID, BODY, timestamp=TIMESTAMP)
    assert headers["X-AsyncQueue-Signature"] == f"t=1614265330,v1={expected}"


def test_rotation_signs_with_every_secret() -> None:
    headers = signing.sign([SECRET, OTHER], MSG_ID, BODY, timestamp=TIMESTAMP)
    key_a = base64.b64decode(SECRET.removeprefix("whsec_"))
    key_b = base64.b64decode(OTHER.removeprefix("whsec_"))
    message = f"{MSG_ID}.{TIMESTAMP}.".encode() + BODY
    assert headers["webhook-signature"] == f"v1,{_b64(key_a, message)} v1,{_b64(key_b, message)}"
    legacy = b"1614265330." + BODY
    assert headers["X-AsyncQueue-Signature"] == (
        f"t=1614265330,v1={_hex(SECRET.encode(), legacy)},v1={_hex(OTHER.encode(), legacy)}"
    )


def test_empty_body_and_non_ascii_body() -> None:
    for body in (b"", '{"name":"Zoë 🎉"}'.encode()):
        headers = signing.sign([SECRET], MSG_ID, body, timestamp=TIMESTAMP)
        assert headers["X-AsyncQueue-Signature"].endswith(
            _hex(SECRET.encode(), b"1614265330." + body)
        )
        signing.verify(body, headers, [SECRET], now=TIMESTAMP)


def test_timestamp_defaults_to_now() -> None:
    headers = signing.sign([SECRET], MSG_ID, BODY)
    assert headers["X-AsyncQueue-Signature"].startswith(f"t={headers['webhook-timestamp']},")
    signing.verify(BODY, headers, [SECRET])


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signing.sign([], MSG_ID, BODY)
    with pytest.raises(ValueError, match="not base64"):
        signing.sign(["whsec_not base64!"], MSG_ID, BODY)


def test_generated_secrets_have_the_standard_form() -> None:
    secret = tokens.new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(signing.standard_key(secret)) >= 24


# ---------------------------------------------------------------- interop


def test_official_standardwebhooks_package_verifies_our_signature() -> None:
    """Interoperability: the official library accepts what we send (and parses the body)."""
    secret = tokens.new_webhook_secret()
    body = b'{"event":"task.completed","task":{"id":"x","status":"completed"}}'
    headers = signing.sign([secret], "01890a5d-ac96-774b-bcce-b302099a8057", body)
    assert Webhook(secret).verify(body, headers) == {
        "event": "task.completed",
        "task": {"id": "x", "status": "completed"},
    }


def test_official_package_verifies_each_secret_during_rotation() -> None:
    old, new = tokens.new_webhook_secret(), tokens.new_webhook_secret()
    headers = signing.sign([new, old], "evt", BODY)
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(tokens.new_webhook_secret()).verify(BODY, headers)


def test_we_verify_what_the_official_package_signs() -> None:
    now = datetime.now(tz=UTC)
    signature = Webhook(SECRET).sign(MSG_ID, now, BODY.decode())
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    signing.verify(BODY, headers, [SECRET])


# ---------------------------------------------------------------- verify


def signed(body: bytes = BODY, secrets: list[str] | None = None, **kw: int) -> dict[str, str]:
    return signing.sign(secrets or [SECRET], MSG_ID, body, timestamp=kw.get("t", TIMESTAMP))


def standard_only(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("webhook-")}


def legacy_only(headers: dict[str, str]) -> dict[str, str]:
    return {"X-AsyncQueue-Signature": headers["X-AsyncQueue-Signature"]}


@pytest.mark.parametrize("pick", [dict, standard_only, legacy_only], ids=["both", "std", "aq"])
def test_verify_accepts_either_format(pick: object) -> None:
    headers = pick(signed())  # type: ignore[operator]
    signing.verify(BODY, headers, [SECRET], now=TIMESTAMP)
    upper = {k.upper(): v for k, v in headers.items()}
    signing.verify(BODY, upper, [SECRET], now=TIMESTAMP)  # header names in any case


@pytest.mark.parametrize("pick", [standard_only, legacy_only], ids=["std", "aq"])
def test_verify_refuses_a_changed_body_or_another_secret(pick: object) -> None:
    headers = pick(signed())  # type: ignore[operator]
    with pytest.raises(signing.SignatureMismatch):
        signing.verify(BODY + b" ", headers, [SECRET], now=TIMESTAMP)
    with pytest.raises(signing.SignatureMismatch):
        signing.verify(BODY, headers, [OTHER], now=TIMESTAMP)


@pytest.mark.parametrize("pick", [standard_only, legacy_only], ids=["std", "aq"])
def test_verify_with_a_list_of_secrets_during_rotation(pick: object) -> None:
    headers = pick(signed(secrets=[OTHER]))  # type: ignore[operator]
    signing.verify(BODY, headers, [SECRET, OTHER], now=TIMESTAMP)
    both = pick(signed(secrets=[SECRET, OTHER]))  # type: ignore[operator]
    signing.verify(BODY, both, [OTHER], now=TIMESTAMP)
    signing.verify(BODY, both, [SECRET], now=TIMESTAMP)


@pytest.mark.parametrize("pick", [standard_only, legacy_only], ids=["std", "aq"])
@pytest.mark.parametrize(
    ("offset", "ok"), [(-301, False), (-300, True), (0, True), (300, True), (301, False)]
)
def test_tolerance_is_five_minutes_either_way(pick: object, offset: int, ok: bool) -> None:
    headers = pick(signed())  # type: ignore[operator]
    now = TIMESTAMP - offset
    if ok:
        signing.verify(BODY, headers, [SECRET], now=now)
    else:
        with pytest.raises(signing.TimestampOutOfRange, match=r"too (old|new)"):
            signing.verify(BODY, headers, [SECRET], now=now)


def test_missing_headers_fail_closed() -> None:
    with pytest.raises(signing.MissingSignature):
        signing.verify(BODY, {}, [SECRET], now=TIMESTAMP)
    partial = standard_only(signed())
    del partial["webhook-signature"]
    with pytest.raises(signing.MissingSignature):
        signing.verify(BODY, partial, [SECRET], now=TIMESTAMP)
    with pytest.raises(signing.MissingSignature):
        signing.verify(BODY, {"X-AsyncQueue-Signature": ""}, [SECRET], now=TIMESTAMP)


def test_a_bad_standard_signature_is_not_rescued_by_the_other_header() -> None:
    headers = signed()
    headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(signing.SignatureMismatch):
        signing.verify(BODY, headers, [SECRET], now=TIMESTAMP)


@pytest.mark.parametrize(
    "header",
    [
        "v1=" + "0" * 64,  # no t=
        "t=1614265330",  # no v1=
        "t=1614265330,t=1614265330,v1=" + "0" * 64,  # two t=
        "t=abc,v1=" + "0" * 64,
        "t=-1614265330,v1=" + "0" * 64,
        "t=1614265330.5,v1=" + "0" * 64,
        "t=1614265330,v1=xyz",
        "t=1614265330,v1=" + "0" * 63,
        "t=1614265330,v1=" + "A" * 64,  # upper-case hex is not what we send
        "t=1614265330;v1=" + "0" * 64,
        "garbage",
        "t=1614265330,v1=" + "0" * 64 + ",v1=" + "é" * 64,
    ],
)
def test_malformed_asyncqueue_header_fails_closed(header: str) -> None:
    with pytest.raises(signing.SignatureError):
        signing.verify(BODY, {"X-AsyncQueue-Signature": header}, [SECRET], now=TIMESTAMP)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("webhook-timestamp", "soon"),
        ("webhook-timestamp", "1614265330.0"),
        ("webhook-timestamp", " "),
        ("webhook-signature", "v1"),
        ("webhook-signature", "v1,"),
        ("webhook-signature", "v2,abc"),
        ("webhook-signature", "v1,not-base64!"),
        ("webhook-signature", "v1,é"),
        ("webhook-id", "two words"),
        ("webhook-id", "x" * 300),
        ("webhook-signature", "v1,a " * 2000),
    ],
)
def test_malformed_standard_headers_fail_closed(name: str, value: str) -> None:
    headers = standard_only(signed())
    headers[name] = value
    with pytest.raises(signing.SignatureError):
        signing.verify(BODY, headers, [SECRET], now=TIMESTAMP)


def test_other_signature_versions_are_skipped_not_trusted() -> None:
    headers = standard_only(signed())
    headers["webhook-signature"] = "v1a,whatever " + headers["webhook-signature"]
    signing.verify(BODY, headers, [SECRET], now=TIMESTAMP)


@pytest.mark.parametrize("secrets", [[], [""], ["whsec_***"], "whsec_abc"])
def test_misconfigured_secrets_raise_loudly(secrets: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        signing.verify(BODY, signed(), secrets, now=TIMESTAMP)  # type: ignore[arg-type]


def test_module_is_pure() -> None:
    """``signing.py`` imports no models, DRF or Celery (STYLE convention 5)."""
    code = (
        "import sys; import asyncqueue_django.signing; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('django', 'rest_framework', 'celery')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
