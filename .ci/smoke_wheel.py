"""Smoke test of an installed asyncqueue_django (run by .ci/run with the built wheel installed
into a clean virtualenv, from a directory outside the checkout).

It configures a minimal Django project in process (SQLite in a temporary directory, the
embedded broker), then checks what only the built package can get wrong: the package is the
installed one, not the checkout; the migrations are there (``migrate``, no drift); the
templates are there (the admin pages and the API docs page render); the static files the
admin pages use are collected; system checks pass; and the API answers: a key is issued by
the management command, a task is created, read back and cancelled, the schema is served.
Exits non-zero on the first failure.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="aq-wheel-smoke-"))


def configure() -> None:
    import django
    from cryptography.fernet import Fernet
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="smoke-test-only",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "rest_framework",
            "django_celery_beat",
            "drf_spectacular_sidecar",
            "asyncqueue_django",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(WORK / "db.sqlite3")}
        },
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        STATIC_URL="static/",
        STATIC_ROOT=str(WORK / "static"),
        CELERY_BROKER_URL=f"sqlite:///{WORK / 'broker.sqlite3'}",
        CELERY_BROKER_TRANSPORT="asyncqueue_django.embedded_broker:Transport",
        CELERY_TASK_DEFAULT_QUEUE="default",
        # DEBUG is off: the Token Vault needs a key (system check asyncqueue.W003).
        ASYNCQUEUE={
            "ALLOW_PRIVATE_TARGETS": False,
            "PUBLIC_BASE_URL": "http://testserver",
            "VAULT_KEYS": [Fernet.generate_key().decode()],
        },
    )
    django.setup()


def check(condition: object, message: str) -> None:
    if not condition:
        raise SystemExit(f"wheel smoke test: FAILED: {message}")
    print(f"ok   {message}")


def main() -> int:
    checkout = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
    configure()

    from celery import Celery
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.template.loader import get_template
    from django.test import Client

    import asyncqueue_django

    installed = Path(asyncqueue_django.__file__).resolve()
    check(
        checkout is None or checkout not in installed.parents,
        f"asyncqueue_django {asyncqueue_django.__version__} is imported from {installed.parent}",
    )
    package = installed.parent
    check((package / "py.typed").is_file(), "py.typed ships")
    migrations = sorted(p.name for p in (package / "migrations").glob("0*.py"))
    check(migrations, f"migrations ship: {', '.join(migrations)}")

    # A Celery app like a host's, so sending a task on commit finds the embedded broker.
    app = Celery("smoke")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.set_default()

    call_command("check", fail_level="WARNING")
    check(True, "system checks pass")
    call_command("migrate", verbosity=0)
    check(True, "migrate applies every migration")
    call_command("makemigrations", "asyncqueue", check=True, dry_run=True, verbosity=0)
    check(True, "no model change lacks a migration")

    for name in (
        "asyncqueue/swagger.html",
        "admin/asyncqueue/task/resolve_waiting.html",
        "admin/asyncqueue/apikey/issued.html",
        "admin/asyncqueue/task/change_form.html",
        "admin/asyncqueue/dashboard/page.html",
        "admin/asyncqueue/dashboard/charts.html",
    ):
        check(get_template(name), f"template {name} ships")
    call_command("collectstatic", interactive=False, verbosity=0)
    check((WORK / "static" / "admin" / "js" / "cancel.js").is_file(), "static files collect")
    check((WORK / "static" / "asyncqueue" / "admin.css").is_file(), "the app's stylesheet ships")
    swagger = WORK / "static" / "drf_spectacular_sidecar" / "swagger-ui-dist" / "swagger-ui.css"
    check(swagger.is_file(), "Swagger UI's files collect (offline /v1/docs)")

    out = io.StringIO()
    call_command("asyncqueue_create_api_key", "--team", "smoke", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    check(key.startswith("aq_"), "asyncqueue_create_api_key issues a key")

    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    created = client.post(
        "/v1/tasks",
        data=json.dumps({"targetUrl": "https://example.com/hook", "payload": {"n": 1}}),
        content_type="application/json",
        **auth,
    )
    check(created.status_code == 201, f"POST /v1/tasks answers 201 ({created.status_code})")
    task_id = created.json()["task"]["id"]
    got = client.get(f"/v1/tasks/{task_id}", **auth)
    check(got.status_code == 200 and got.json()["task"]["id"] == task_id, "GET /v1/tasks/{id}")
    token = client.post(
        "/v1/tokens",
        data=json.dumps({"name": "smoke", "value": "smoke-secret-value"}),
        content_type="application/json",
        **auth,
    )
    check(token.status_code == 201, f"POST /v1/tokens stores a secret ({token.status_code})")
    cancelled = client.post(f"/v1/tasks/{task_id}/cancel", **auth)
    check(cancelled.json()["task"]["status"] == "cancelled", "POST /v1/tasks/{id}/cancel")
    schema = client.get("/v1/schema")
    check(schema.status_code == 200 and "/v1/tasks" in schema.json()["paths"], "/v1/schema")
    docs = client.get("/v1/docs")
    check(docs.status_code == 200 and b"/v1/schema" in docs.content, "/v1/docs renders")

    User.objects.create_superuser("smoke", "smoke@example.com", "smoke-password")
    client.login(username="smoke", password="smoke-password")
    for url in (
        "/admin/asyncqueue/task/",
        "/admin/asyncqueue/vaulttoken/",
        f"/admin/asyncqueue/task/{task_id}/change/",
        "/admin/asyncqueue/dashboard/",
        "/admin/asyncqueue/apikey/add/",
    ):
        page = client.get(url)
        check(page.status_code == 200, f"admin page {url} renders ({page.status_code})")
    print("wheel smoke test: passed")
    return 0


# The URL configuration of the smoke project: the admin and the app's API.
def _urls() -> list[object]:
    from django.contrib import admin
    from django.urls import include, path

    return [path("admin/", admin.site.urls), path("", include("asyncqueue_django.urls"))]


def __getattr__(name: str) -> object:
    if name == "urlpatterns":
        return _urls()
    raise AttributeError(name)


if __name__ == "__main__":
    sys.exit(main())
