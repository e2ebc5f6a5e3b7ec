"""The periodic sweeps, for hosts to merge into ``CELERY_BEAT_SCHEDULE``::

    from asyncqueue_django.beat import CELERY_BEAT_SCHEDULE as ASYNCQUEUE_BEAT
    CELERY_BEAT_SCHEDULE = {**ASYNCQUEUE_BEAT, ...}

Projects using django-celery-beat's DatabaseScheduler install the same entries as
``PeriodicTask`` rows with ``manage.py asyncqueue_install_beat`` (idempotent).
"""

from __future__ import annotations

from typing import Any

CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {}
