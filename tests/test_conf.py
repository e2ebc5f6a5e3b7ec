"""``conf.py``: the ``ASYNCQUEUE`` dict read through ``app_settings`` at access time."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings
from django.test import override_settings

from asyncqueue_django.conf import DEFAULTS, SETTINGS, AppSettings, app_settings

# The documented defaults (README settings table), written out so a changed default is seen.
# A new setting needs a row here (STYLE: every setting has a default, a check and a test).
EXPECTED_DEFAULTS = {
    "DEFAULT_TIMEOUT": 30,
    "MAX_TIMEOUT": 300,
    "DEFAULT_MAX_RETRIES": 3,
    "MAX_RETRIES": 10,
    "DEFAULT_MAX_WAIT_TIME": 86_400,
    "MAX_WAIT_TIME": 30 * 86_400,
    "MAX_DELAY": 365 * 86_400,
    "MAX_BODY_BYTES": 1_048_576,
    "MAX_METADATA_BYTES": 16_384,
    "MAX_REQUEST_BYTES": 2_097_152,
    "MAX_HEADERS": 50,
    "QUEUES": None,
    "IDEMPOTENCY_TTL": 86_400,
    "COMPLETE_ON_CLIENT_ERROR": False,
    "PUBLIC_BASE_URL": None,
    "CALLBACK_RATE_LIMIT": "30/min",
    "MIN_POLL_INTERVAL": 1,
    "MAX_POLL_DURATION": 86_400,
    "ALLOW_PRIVATE_TARGETS": False,
    "ALLOWED_NETWORKS": [],
    "MAX_RESPONSE_BYTES": 1_048_576,
    "MAX_STORED_RESPONSE_BYTES": 65_536,
    "MAX_REDIRECTS": 5,
    "CONNECT_TIMEOUT": 10,
    "RETRY_BASE_DELAY": 1.0,
    "RETRY_MAX_DELAY": 3600,
    "RETRY_JITTER": 0.1,
    "RETRY_AFTER_MAX": 3600,
    "COUNTDOWN_MAX": 60,
    "LEASE_MARGIN": 30,
    "DISPATCH_GRACE": 60,
    "FLOW_CONTROL_DELAY": 0.5,
    "FLOW_CONTROL_MAX_RATE": 1000,
    "MAX_SCHEDULES_PER_TEAM": 1000,
    "SWEEP_BATCH_SIZE": 500,
    "BATCH_SIZE": 16,
    "WEBHOOK_TIMEOUT": 10,
    "WEBHOOK_RETRY_SCHEDULE": [5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200],
    "WEBHOOK_SECRET_OVERLAP": 86_400,
    "WEBHOOK_QUEUE": "default",
    "API_KEY_PREFIX": "aq_",
    "VAULT_KEYS": [],
    "RATE_LIMIT": "6000/min",
    "SIGNAL_RATE_LIMIT": "600/min",
    "TRUSTED_PROXIES": [],
    "METRICS_TOKEN": None,
    "METRICS_CACHE_SECONDS": 10,
}


def test_defaults_are_the_documented_ones() -> None:
    assert DEFAULTS == EXPECTED_DEFAULTS


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_default_has_its_declared_type_and_is_in_range(name: str) -> None:
    spec = SETTINGS[name]
    assert isinstance(spec.default, spec.type)
    # bool is an int subclass: a numeric setting must not default to True/False, nor vice versa.
    assert isinstance(spec.default, bool) == (spec.type is bool)
    if spec.min is not None:
        assert spec.default >= spec.min
    if spec.max is not None:
        assert spec.default <= spec.max
    assert spec.doc.strip()


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_missing_key_reads_the_default(name: str) -> None:
    with override_settings(ASYNCQUEUE={}):
        assert getattr(app_settings, name) == SETTINGS[name].default


def test_reads_at_access_time() -> None:
    assert app_settings.MAX_TIMEOUT == 300
    with override_settings(ASYNCQUEUE={"MAX_TIMEOUT": 60}):
        assert app_settings.MAX_TIMEOUT == 60
        assert app_settings.DEFAULT_TIMEOUT == 30
        with override_settings(ASYNCQUEUE={"MAX_TIMEOUT": 61}):
            assert app_settings.MAX_TIMEOUT == 61
        assert app_settings.MAX_TIMEOUT == 60
    assert app_settings.MAX_TIMEOUT == 300


def test_test_settings_value_is_seen() -> None:
    assert settings.ASYNCQUEUE["ALLOW_PRIVATE_TARGETS"] is True
    assert app_settings.ALLOW_PRIVATE_TARGETS is True


def test_falsy_values_are_not_replaced_by_defaults() -> None:
    with override_settings(ASYNCQUEUE={"MAX_HEADERS": 0, "API_KEY_PREFIX": "", "RETRY_JITTER": 0}):
        assert app_settings.MAX_HEADERS == 0
        assert app_settings.API_KEY_PREFIX == ""
        assert app_settings.RETRY_JITTER == 0


def test_absent_setting_reads_defaults() -> None:
    with override_settings():
        del settings.ASYNCQUEUE
        assert app_settings.ALLOW_PRIVATE_TARGETS is False
        assert app_settings.MAX_TIMEOUT == 300


def test_non_dict_setting_reads_defaults() -> None:
    """The check reports it (E001); reading never crashes."""
    with override_settings(ASYNCQUEUE=[("MAX_TIMEOUT", 5)]):
        assert app_settings.MAX_TIMEOUT == 300


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="Unknown ASYNCQUEUE setting 'NOPE'"):
        app_settings.NOPE  # noqa: B018
    with override_settings(ASYNCQUEUE={"NOPE": 1}), pytest.raises(AttributeError, match="NOPE"):
        app_settings.NOPE  # noqa: B018
    assert not hasattr(app_settings, "max_timeout")


def test_a_fresh_instance_reads_the_same_values() -> None:
    with override_settings(ASYNCQUEUE={"MAX_RETRIES": 7}):
        assert AppSettings().MAX_RETRIES == 7
        assert AppSettings().user_settings() == {"MAX_RETRIES": 7}


def test_app_settings_never_writes_django_settings() -> None:
    before = dict(settings.ASYNCQUEUE)
    for name in SETTINGS:
        getattr(app_settings, name)
    assert before == settings.ASYNCQUEUE


def test_module_is_pure() -> None:
    """``conf.py`` imports no models, DRF or Celery (STYLE convention 5)."""
    code = (
        "import sys; import asyncqueue_django.conf; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('rest_framework', 'celery') or m == 'asyncqueue_django.models'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
