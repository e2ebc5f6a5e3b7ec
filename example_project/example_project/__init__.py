"""The example project: the app wired in exactly as a user would (see ``settings.py``)."""

from __future__ import annotations

# Loaded with Django, so ``@shared_task`` and ``on_commit`` dispatch use this project's app.
from example_project.celery import app as celery_app

__all__ = ["celery_app"]
