"""THE ONLY WRITE PATH for tasks and their webhook events, split by concern over one shared
engine (``engine.py``: claim, lease, finish, retry decision, dispatch on commit, sweeps):

- ``teams``: teams, API keys, webhook secrets;
- ``lifecycle``: create (one task or a batch), cancel, retry;
- ``vault``: the Token Vault (secrets encrypted at rest, revealed only to build a request);
- ``callbacks``: a task's callback as a kind of outbound work (claim, finish);
- ``deliveries``: webhook events as a kind of outbound work (claim, finish, re-send);
- ``terminal``: the one place every terminal transition passes through (its event);
- ``waits``: signals, early signals, heartbeats, expiry;
- ``provider_callbacks``: provider callback URLs (a signal by another credential);
- ``polls``: provider polls as a kind of outbound work (claim, finish);
- ``sweeps``: due, lost and stale-lease sweeps of every kind;
- ``retention``: pruning finished tasks;
- ``schedules``: cron schedules on django-celery-beat, each tick creating one task.
- ``flow``: flow control and paused queues, the gate of a task's claim;
- ``queues``: queue depth and the pause switch;
- ``retention``: pruning finished tasks.

Every status change is a guarded conditional UPDATE through the kind's lifecycle
(``states.py``): of two concurrent actors exactly one updates the row and the other sees 0
rows, a normal outcome reported as :class:`~asyncqueue_django.exceptions.InvalidTransition` or
``None``. Side effects (publishing to the broker, Django signals) run after the transaction
commits. This package imports no API, admin, Celery task or DRF code: the broker is reached
through :data:`engine.publisher`, which the app wires to ``broker.publish`` when it starts.

The names below are the public interface; import them from ``asyncqueue_django.services``.
"""

from __future__ import annotations

from asyncqueue_django.exceptions import (
    AlreadySignalled,
    ApiKeyRevoked,
    CallbackNotFound,
    CallbackUrlNotConfigured,
    IdempotencyConflict,
    InvalidScheduleInput,
    InvalidTokenReference,
    InvalidTransition,
    ScheduleNotFound,
    SignalTokenNotFound,
    TaskNotFound,
    TokenNotFound,
    TokenRevoked,
    WebhookInFlight,
    WebhookNotFound,
)
from asyncqueue_django.services.callbacks import (
    claim_due_tasks,
    claim_task,
    enqueue,
    finish_attempt,
    finish_attempts,
)
from asyncqueue_django.services.deliveries import (
    claim_due_webhooks,
    claim_webhook,
    enqueue_webhook,
    finish_webhook_attempt,
    finish_webhook_attempts,
    resend_latest_webhook,
    resend_webhook,
)
from asyncqueue_django.services.engine import storable_call, wakeups, without_response
from asyncqueue_django.services.lifecycle import (
    BatchItem,
    CreatedTask,
    cancel_task,
    create_task,
    create_tasks,
    retry_task,
)
from asyncqueue_django.services.polls import (
    claim_due_polls,
    claim_poll,
    finish_poll,
    finish_polls,
)
from asyncqueue_django.services.provider_callbacks import callback_url_for, receive_callback
from asyncqueue_django.services.queues import (
    get_queue,
    list_queues,
    pause_queue,
    resume_queue,
)
from asyncqueue_django.services.retention import prunable_tasks, prune_finished
from asyncqueue_django.services.schedules import (
    create_schedule,
    delete_schedule,
    drop_unused_crontab,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    run_schedule,
    update_schedule,
)
from asyncqueue_django.services.sweeps import (
    dispatch_due,
    dispatch_due_polls,
    dispatch_due_webhooks,
    pending_sweeps,
    recover_stale_leases,
    recover_stale_polls,
    recover_stale_webhooks,
    redispatch_lost,
    redispatch_lost_polls,
    redispatch_lost_webhooks,
)
from asyncqueue_django.services.tables import get_task
from asyncqueue_django.services.teams import (
    API_KEY_TOUCH_INTERVAL,
    IssuedApiKey,
    authenticate_api_key,
    create_api_key,
    get_or_create_team,
    revoke_api_key,
    rotate_webhook_secret,
)
from asyncqueue_django.services.vault import (
    UndecryptableToken,
    create_token,
    list_tokens,
    reveal_headers,
    revoke_token,
    rotate_keys,
)
from asyncqueue_django.services.waits import (
    SignalResult,
    expire_overdue,
    heartbeat,
    resolve_waiting_task,
    signal_task,
)
from asyncqueue_django.values import FlowControl, QueueInfo, TaskSpec, fingerprint_of

__all__ = [
    "API_KEY_TOUCH_INTERVAL",
    "AlreadySignalled",
    "ApiKeyRevoked",
    "BatchItem",
    "CallbackNotFound",
    "CallbackUrlNotConfigured",
    "CreatedTask",
    "FlowControl",
    "IdempotencyConflict",
    "InvalidScheduleInput",
    "InvalidTokenReference",
    "InvalidTransition",
    "IssuedApiKey",
    "QueueInfo",
    "ScheduleNotFound",
    "SignalResult",
    "SignalTokenNotFound",
    "TaskNotFound",
    "TaskSpec",
    "TokenNotFound",
    "TokenRevoked",
    "UndecryptableToken",
    "WebhookInFlight",
    "WebhookNotFound",
    "authenticate_api_key",
    "callback_url_for",
    "cancel_task",
    "claim_due_polls",
    "claim_due_tasks",
    "claim_due_webhooks",
    "claim_poll",
    "claim_task",
    "claim_webhook",
    "create_api_key",
    "create_schedule",
    "create_task",
    "create_tasks",
    "create_token",
    "delete_schedule",
    "dispatch_due",
    "dispatch_due_polls",
    "dispatch_due_webhooks",
    "drop_unused_crontab",
    "enqueue",
    "enqueue_webhook",
    "expire_overdue",
    "fingerprint_of",
    "finish_attempt",
    "finish_attempts",
    "finish_poll",
    "finish_polls",
    "finish_webhook_attempt",
    "finish_webhook_attempts",
    "get_or_create_team",
    "get_queue",
    "get_schedule",
    "get_task",
    "heartbeat",
    "list_queues",
    "list_schedules",
    "list_tokens",
    "pause_queue",
    "pause_schedule",
    "pending_sweeps",
    "prunable_tasks",
    "prune_finished",
    "receive_callback",
    "recover_stale_leases",
    "recover_stale_polls",
    "recover_stale_webhooks",
    "redispatch_lost",
    "redispatch_lost_polls",
    "redispatch_lost_webhooks",
    "resend_latest_webhook",
    "resend_webhook",
    "resolve_waiting_task",
    "resume_queue",
    "resume_schedule",
    "retry_task",
    "reveal_headers",
    "revoke_api_key",
    "revoke_token",
    "rotate_keys",
    "rotate_webhook_secret",
    "run_schedule",
    "signal_task",
    "storable_call",
    "update_schedule",
    "wakeups",
    "without_response",
]
