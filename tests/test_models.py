"""Models: time-ordered UUIDv7 ids, and the CheckConstraints that refuse impossible rows."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from asyncqueue_django import services, tokens
from asyncqueue_django.models import ApiKey, Attempt, AttemptOutcome, Task, Team, uuid7


def make_task(team: Team, **fields: Any) -> Task:
    values: dict[str, Any] = {
        "team": team,
        "target_url": "https://example.com/hook",
        "timeout": 30,
        "max_retries": 3,
        "max_wait_time": 60,
    }
    values.update(fields)
    return Task.objects.create(**values)


def _ms(u: uuid.UUID) -> int:
    return u.int >> 80


def test_uuid7_layout() -> None:
    before = time.time_ns() // 1_000_000
    u = uuid7()
    after = time.time_ns() // 1_000_000
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert before <= _ms(u) <= after


def test_uuid7_is_time_ordered() -> None:
    ids = [uuid7() for _ in range(2000)]
    stamps = [_ms(u) for u in ids]
    assert stamps == sorted(stamps)
    # Ids from different milliseconds sort in creation order (the timestamp leads).
    for earlier, later in itertools.pairwise(ids):
        if _ms(earlier) < _ms(later):
            assert earlier < later
            assert str(earlier) < str(later)
    assert len(set(ids)) == 2000


def test_uuid7_across_milliseconds_sorts_by_time() -> None:
    first = uuid7()
    while (second := uuid7()) and _ms(second) == _ms(first):
        pass
    assert first < second
    assert sorted([second, first]) == [first, second]


@pytest.mark.django_db
def test_task_ids_are_uuid7(team: Team) -> None:
    a = make_task(team)
    b = make_task(team)
    assert isinstance(a.pk, uuid.UUID)
    assert a.pk.version == 7
    assert b.pk.version == 7
    assert _ms(a.pk) <= _ms(b.pk)
    assert Task.objects.get(pk=a.pk).pk == a.pk


@pytest.mark.django_db
def test_defaults(team: Team) -> None:
    task = make_task(team)
    task.refresh_from_db()
    assert task.status == "pending"
    assert task.method == "POST"
    assert task.headers == {}
    assert task.payload is None
    assert task.body is None
    assert task.priority == 5
    assert task.queue == "default"
    assert task.retry_backoff == "exponential"
    assert task.retry_count == 0
    assert task.wait_for_signal is False
    assert task.metadata == {}
    assert task.idempotency_key is None
    assert task.is_terminal is False


def _refused(team: Team, **fields: Any) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make_task(team, **fields)


BAD_ROWS = {
    "priority-11": {"priority": 11},
    "priority-0": {"priority": 0},
    "payload-and-body": {"payload": {"a": 1}, "body": "raw"},
    "payload-and-empty-body": {"payload": [], "body": ""},
    "waiting-without-deadline": {"status": "waiting", "wait_deadline": None},
    "processing-without-lease": {"status": "processing", "lease_expires_at": None},
    "unknown-status": {"status": "bogus"},
    "retry-count-above-max": {"retry_count": 4, "max_retries": 3},
}


@pytest.mark.django_db
@pytest.mark.parametrize("fields", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_constraints_refuse_bad_rows(team: Team, fields: dict[str, Any]) -> None:
    _refused(team, **fields)
    assert Task.objects.count() == 0


@pytest.mark.django_db
def test_constraints_refuse_bad_updates(team: Team) -> None:
    task = make_task(team)
    for fields in BAD_ROWS.values():
        with pytest.raises(IntegrityError), transaction.atomic():
            Task.objects.filter(pk=task.pk).update(**fields)
    task.refresh_from_db()
    assert task.status == "pending"
    assert task.priority == 5


GOOD_ROWS = {
    "priority-1": {"priority": 1},
    "priority-10": {"priority": 10},
    "payload-only": {"payload": {"a": 1}},
    "json-null-payload-is-no-payload": {"payload": None, "body": "raw"},
    "body-only": {"body": ""},
    "waiting-with-deadline": {"status": "waiting", "wait_deadline": timezone.now()},
    "processing-with-lease": {"status": "processing", "lease_expires_at": timezone.now()},
    "retry-count-at-max": {"retry_count": 3, "max_retries": 3},
}


@pytest.mark.django_db
@pytest.mark.parametrize("fields", GOOD_ROWS.values(), ids=GOOD_ROWS.keys())
def test_constraints_accept_good_rows(team: Team, fields: dict[str, Any]) -> None:
    task = make_task(team, **fields)
    assert Task.objects.filter(pk=task.pk).count() == 1


@pytest.mark.django_db
def test_idempotency_key_unique_per_team(team: Team) -> None:
    other = Team.objects.create(name="other")
    make_task(team, idempotency_key="k")
    make_task(other, idempotency_key="k")  # another team may use the same key
    make_task(team, idempotency_key=None)
    make_task(team, idempotency_key=None)  # many tasks without a key
    with pytest.raises(IntegrityError), transaction.atomic():
        make_task(team, idempotency_key="k")
    assert Task.objects.filter(idempotency_key="k").count() == 2


@pytest.mark.django_db
def test_signal_token_digest_unique(team: Team) -> None:
    digest = tokens.digest(tokens.new_signal_token())
    make_task(team, signal_token_digest=digest)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_task(team, signal_token_digest=digest)


@pytest.mark.django_db
def test_attempt_numbers_unique_per_task(team: Team) -> None:
    task = make_task(team)
    now = timezone.now()
    Attempt.objects.create(task=task, number=1, started_at=now, outcome=AttemptOutcome.FAILED)
    with pytest.raises(IntegrityError), transaction.atomic():
        Attempt.objects.create(task=task, number=1, started_at=now, outcome=AttemptOutcome.FAILED)
    assert str(Attempt.objects.get()) == f"attempt 1 of {task.pk}"


@pytest.mark.django_db
def test_ordering_newest_first(team: Team) -> None:
    base = timezone.now()
    tasks = [make_task(team) for _ in range(3)]
    for i, task in enumerate(tasks):
        Task.objects.filter(pk=task.pk).update(created_at=base + timedelta(seconds=i))
    assert list(Task.objects.values_list("pk", flat=True)) == [t.pk for t in reversed(tasks)]


@pytest.mark.django_db
def test_is_terminal(team: Team) -> None:
    task = make_task(team, status="cancelled")
    assert task.is_terminal is True
    assert str(task) == f"{task.pk} (cancelled)"


@pytest.mark.django_db
def test_team_gets_a_webhook_secret() -> None:
    a = Team.objects.create(name="a")
    b = Team.objects.create(name="b")
    assert a.webhook_secret.startswith("whsec_")
    assert a.webhook_secret != b.webhook_secret
    assert str(a) == "a"


@pytest.mark.django_db
def test_api_key_str_never_shows_the_key(team: Team) -> None:
    issued = services.create_api_key(team, "billing")
    key = ApiKey.objects.get(pk=issued.api_key.pk)
    assert str(key) == f"{key.prefix}… (billing)"
    assert issued.raw_key not in str(key)
    assert key.digest == tokens.digest(issued.raw_key)
    assert key.is_active is True
