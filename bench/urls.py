"""The API under ``/v1`` and the create benchmark's floor view at ``/bench/floor``."""

from __future__ import annotations

from django.urls import include, path

from bench.floor.views import FloorCreateView

urlpatterns = [
    path("bench/floor", FloorCreateView.as_view()),
    path("", include("asyncqueue_django.urls")),
]
