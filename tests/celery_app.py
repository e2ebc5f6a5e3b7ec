"""The tests' own Celery app, set as current and default, so no test reaches a global app."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("asyncqueue_tests", set_as_current=True)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["asyncqueue_django"])
app.set_default()
