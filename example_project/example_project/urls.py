"""The whole URL configuration a host needs: the admin and the app's ``/v1`` API; plus the
``/demo/`` app of this example project, which ``/`` leads to."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    # The landing page: the demo, which links to the admin, the API docs and the schema.
    path("", RedirectView.as_view(pattern_name="demo:index", permanent=False), name="home"),
    path("admin/", admin.site.urls),
    path("demo/", include("demo.urls")),
    path("", include("asyncqueue_django.urls")),
]
