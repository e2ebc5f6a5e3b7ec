"""Mount with ``path("", include("asyncqueue_django.urls"))``: serves ``/v1/...`` and
``/metrics``."""

from __future__ import annotations

from django.urls import include, path, re_path

from asyncqueue_django.metrics import metrics_view

app_name = "asyncqueue"

urlpatterns = [
    path("v1/", include("asyncqueue_django.api.urls")),
    re_path(r"^metrics/?$", metrics_view, name="metrics"),
]
