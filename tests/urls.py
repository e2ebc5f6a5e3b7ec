from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("demo/", include("demo.urls")),  # the example project's demo app (tests/test_demo.py)
    path("", include("asyncqueue_django.urls")),
]
