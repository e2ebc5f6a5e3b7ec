"""The import contracts of ``pyproject.toml`` hold (CI runs ``lint-imports`` too; this keeps a
broken arrow from surviving a local test run), and the worker's modules load no API code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_worker_loads_no_api_module() -> None:
    """Importing the Celery tasks (what a worker process does) pulls in no serializer, view or
    schema code (the host's INSTALLED_APPS may still load DRF's app config, and the app of
    drf-spectacular-sidecar, which holds only Swagger UI's static files)."""
    code = (
        "import django, sys; django.setup(); import asyncqueue_django.tasks; "
        "bad = sorted(m for m in sys.modules if m.startswith(('asyncqueue_django.api', "
        "'rest_framework.serializers', 'rest_framework.fields', 'drf_spectacular')) "
        "and not m.startswith('drf_spectacular_sidecar')); print(bad)"
    )
    env_settings = {"DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env_settings},
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
