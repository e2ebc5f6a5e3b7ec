"""The test project as a WSGI application, for tests that run it on gunicorn (several web
processes). The tests' Celery app is loaded first, so the processes publish to the run's broker.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from django.core.wsgi import get_wsgi_application

import tests.celery_app  # noqa: F401  (the current Celery app: the run's broker)

application = get_wsgi_application()
