"""Mount with ``path("", include("asyncqueue_django.urls"))``: serves ``/v1/...``."""

from __future__ import annotations

from django.urls import include, path

app_name = "asyncqueue"

urlpatterns = [
    path("v1/", include("asyncqueue_django.api.urls")),
]
