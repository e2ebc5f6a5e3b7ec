from __future__ import annotations

from django.apps import AppConfig


class AsyncQueueConfig(AppConfig):
    name = "asyncqueue_django"
    label = "asyncqueue"
    verbose_name = "AsyncQueue"
    # Pinned so a host project's DEFAULT_AUTO_FIELD never produces a migration for this app.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from asyncqueue_django import accesslog, broker, checks  # noqa: F401  (checks: registered)
        from asyncqueue_django.services import engine

        # The write path publishes through this; it imports no Celery itself.
        if engine.publisher is None:
            engine.set_publisher(broker.publish)
        # Signal tokens and callback ids are in URL paths: keep them out of access logs.
        accesslog.install()
