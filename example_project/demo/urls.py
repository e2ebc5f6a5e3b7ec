"""Mounted at ``/demo/`` by the example project (``path("demo/", include("demo.urls"))``)."""

from __future__ import annotations

from django.urls import path

from demo import provider, views

app_name = "demo"

urlpatterns = [
    # The client ("your app" creating tasks and keeping their tokens).
    path("", views.index, name="index"),
    path("client/convert-video", views.client_form, {"action": "convert-video"}, name="convert"),
    path("client/start-review", views.client_form, {"action": "start-review"}, name="review"),
    path("client/start-checkout", views.client_form, {"action": "start-checkout"}, name="checkout"),
    path("api/client/convert-video", views.client_api, {"action": "convert-video"}),
    path("api/client/start-review", views.client_api, {"action": "start-review"}),
    path("api/client/start-checkout", views.client_api, {"action": "start-checkout"}),
    path("tasks/<uuid:task_id>", views.task_page, name="task"),
    # Callback targets the worker calls.
    path("api/convert-video", views.convert_video_target, name="convert-video"),
    path("api/start-review", views.start_review_target, name="start-review"),
    path("api/start-checkout", views.start_checkout_target, name="start-checkout"),
    # Signallers: the review page and the fake payment provider's webhook.
    path("reviews/", views.reviews, name="reviews"),
    path("reviews/<int:pk>/decision", views.review_decision, name="review-decision"),
    path("api/stripe-webhook", views.stripe_webhook, name="stripe-webhook"),
    # A fake AI provider: polled by the service, or calling a task's callback URL.
    path("api/provider/jobs", provider.submit, name="provider-submit"),
    path("api/provider/jobs/<str:job_id>", provider.job, name="provider-job"),
    # The onComplete webhook receiver and what it received.
    path("api/order-webhook", views.order_webhook, name="order-webhook"),
    path("events/", views.events, name="events"),
]
