"""Routes under ``/v1``: exactly the documented paths, a trailing slash accepted too."""

from __future__ import annotations

from typing import Any

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from asyncqueue_django.api.schema import SchemaView, docs_view
from asyncqueue_django.api.views import (
    CallbackView,
    HeartbeatView,
    NotFoundView,
    ProvidersView,
    QueueViewSet,
    ScheduleViewSet,
    SignalView,
    TaskViewSet,
    TokenViewSet,
)


class OptionalSlashRouter(SimpleRouter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("tasks", TaskViewSet, basename="task")
router.register("tokens", TokenViewSet, basename="token")
router.register("schedules", ScheduleViewSet, basename="schedule")
router.register("queues", QueueViewSet, basename="queue")

urlpatterns: list[Any] = [
    *router.urls,
    re_path(r"^schema/?$", SchemaView.as_view(), name="schema"),
    re_path(r"^docs/?$", docs_view, name="docs"),
    re_path(r"^signals/(?P<token>[^/]+)/heartbeat/?$", HeartbeatView.as_view(), name="heartbeat"),
    re_path(r"^signals/(?P<token>[^/]+)/?$", SignalView.as_view(), name="signal"),
    re_path(r"^callbacks/(?P<callback_id>[^/]+)/?$", CallbackView.as_view(), name="callback"),
    re_path(r"^providers/?$", ProvidersView.as_view(), name="providers"),
    re_path(r"^.*$", NotFoundView.as_view(), name="not-found"),
]
