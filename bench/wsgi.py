"""WSGI entry point for gunicorn in the create and polling benchmarks."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from django.core.wsgi import get_wsgi_application

import bench.celery_app  # noqa: F401  (the API publishes through the bench Celery app)

application = get_wsgi_application()
