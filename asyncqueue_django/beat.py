"""The periodic sweeps, for hosts to merge into ``CELERY_BEAT_SCHEDULE``::

    from asyncqueue_django.beat import CELERY_BEAT_SCHEDULE as ASYNCQUEUE_BEAT
    CELERY_BEAT_SCHEDULE = {**ASYNCQUEUE_BEAT}
    # or, other intervals:  from asyncqueue_django.beat import beat_schedule
    # CELERY_BEAT_SCHEDULE = beat_schedule(sweep_interval=2.0)

Projects using django-celery-beat's DatabaseScheduler install the same entries as
``PeriodicTask`` rows with ``manage.py asyncqueue_install_beat`` (idempotent).

This module reads no settings: it is imported from the host's ``settings.py``.
"""

from __future__ import annotations

from typing import Any

SWEEP_INTERVAL = 5.0  # seconds between wait-expiry and due-dispatch sweeps
RECOVERY_INTERVAL = 30.0  # seconds between recovery sweeps


def beat_schedule(
    sweep_interval: float = SWEEP_INTERVAL, recovery_interval: float = RECOVERY_INTERVAL
) -> dict[str, dict[str, Any]]:
    """The schedule entries, keyed by a stable name (also the ``PeriodicTask`` name)."""
    # An entry that cannot run before the next one is due is useless: let it expire.
    return {
        "asyncqueue-expire-waits": {
            "task": "asyncqueue.expire_waits",
            "schedule": sweep_interval,
            "options": {"expires": sweep_interval},
        },
        "asyncqueue-dispatch-due": {
            "task": "asyncqueue.dispatch_due",
            "schedule": sweep_interval,
            "options": {"expires": sweep_interval},
        },
        "asyncqueue-recover": {
            "task": "asyncqueue.recover",
            "schedule": recovery_interval,
            "options": {"expires": recovery_interval},
        },
    }


CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = beat_schedule()
