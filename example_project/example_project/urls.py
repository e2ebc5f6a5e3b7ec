"""The whole URL configuration a host needs: the admin and the app's ``/v1`` API; plus the
``/demo/`` app of this example project."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("demo/", include("demo.urls")),
    path("", include("asyncqueue_django.urls")),
]
