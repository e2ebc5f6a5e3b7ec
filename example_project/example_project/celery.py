"""The project's Celery app: configured from ``CELERY_*`` settings, tasks autodiscovered.

Run a worker with embedded beat from ``example_project/``::

    celery -A example_project worker -B -Q default -l info --pool threads --concurrency 8
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Finds ``tasks.py`` in every installed app, ``asyncqueue_django.tasks`` among them.
app.autodiscover_tasks()


@worker_ready.connect
def _tell_the_supervisor(**_kwargs: object) -> None:
    """``./dev up`` runs the worker at WARNING, where Celery's own "ready." line is not
    logged; it names a file here instead, which appears once the worker consumes."""
    path = os.environ.get("DEV_WORKER_READY_FILE")
    if path:
        with open(path, "w") as out:
            out.write(f"{os.getpid()}\n")
