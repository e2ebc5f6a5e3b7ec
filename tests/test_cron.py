"""Cron expressions: parsing, refusals, and the tick times they mean in a time zone — the same
moments django-celery-beat's beat wakes a schedule up (checked against its own crontab), across
the daylight-saving changes of Europe/Paris."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from django_celery_beat.tzcrontab import TzAwareCrontab

from asyncqueue_django import cron

PARIS = ZoneInfo("Europe/Paris")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ticks(expression: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    parsed, tz = cron.parse(expression), cron.zone(zone)
    out: list[datetime] = []
    t = cron.next_tick(parsed, tz, start)
    while t is not None and t < end:
        out.append(t)
        t = cron.next_tick(parsed, tz, t)
    return out


def beat_firings(expression: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """When beat fires this cron: django-celery-beat's crontab asked every 30 s, as beat does."""
    app = Celery(set_as_current=False)
    app.conf.enable_utc = True
    minute, hour, dom, month, dow = expression.split()
    entry = TzAwareCrontab(minute, hour, dow, dom, month, tz=ZoneInfo(zone), app=app)
    now = [start]
    entry.nowfun = lambda: now[0].astimezone(ZoneInfo(zone))
    fired, last, t = [], start, start
    while t < end:
        now[0] = t
        if entry.is_due(last)[0]:
            fired.append(t)
            last = t
        t += timedelta(seconds=30)
    return fired


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("0 9 * * *", "0 9 * * *"),
        ("*/15 9-17 * * 1-5", "*/15 9-17 * * 1-5"),
        ("0 9 * jan-mar MON-fri", "0 9 * 1-3 1-5"),
        ("0 0 * * 7", "0 0 * * 0"),
        ("0 0 * * 5-7", "0 0 * * 0,5,6"),
        ("5,35 1-23/2 1,15 * *", "5,35 1-23/2 1,15 * *"),
        ("  0   9 * *   *  ", "0 9 * * *"),
    ],
)
def test_parse_gives_a_canonical_expression(given: str, canonical: str) -> None:
    assert cron.parse(given).expression == canonical


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("", "5 fields"),
        ("* * * *", "5 fields"),
        ("* * * * * *", "5 fields"),
        ("60 * * * *", "Minute 60 is out of range 0-59"),
        ("* 24 * * *", "Hour 24 is out of range 0-23"),
        ("* * 0 * *", "out of range 1-31"),
        ("* * * 13 *", "out of range 1-12"),
        ("* * * * 8", "out of range 0-7"),
        ("*/0 * * * *", "Step /0"),
        ("5/15 * * * *", "a step needs"),
        ("10-5 * * * *", "upwards"),
        ("x * * * *", "not a valid minute"),
        ("0 0 * foo *", "not a valid month"),
        ("0 0 1 * 1", "not both"),
        ("0 0 30 2 *", "never matches"),
        ("1,,2 * * * *", "not a valid minute"),
        ("-1 * * * *", "not a valid minute"),
        ("0 0 \x00 * *", "not a valid day of month"),
        # Digits other than ASCII 0-9: a superscript two passes str.isdigit() but not int().
        ("\u00b2 * * * *", "not a valid minute"),
        ("1-\u00b2 * * * *", "not a valid minute"),
        ("\u0663 * * * *", "not a valid minute"),
        ("*/\u0663 * * * *", "not a valid minute"),
        ("0 0 * * 1-\u0663", "not a valid day of week"),
        ("0 " * 200, "at most"),
    ],
)
def test_bad_expressions_say_what_is_wrong(given: str, words: str) -> None:
    with pytest.raises(cron.InvalidCron) as caught:
        cron.parse(given)
    assert words in caught.value.message


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "", "europe/paris", "../etc/passwd", "UTC\x00", "localtime"]
)
def test_unknown_time_zones_are_refused(name: str) -> None:
    with pytest.raises(cron.InvalidCron, match="Unknown time zone"):
        cron.zone(name)


def test_known_time_zones() -> None:
    assert cron.zone("UTC").key == "UTC"
    assert cron.zone("Europe/Paris") == PARIS


@pytest.mark.parametrize(
    "expression",
    ["*/7 * * * *", "0 9 * * 1-5", "5,35 1-23/2 1,15 * *", "0 0 * * 0", "*/20 */3 * 2-11/3 *"],
)
def test_the_fields_mean_what_celery_reads(expression: str) -> None:
    parsed = cron.parse(expression)
    minute, hour, dom, month, dow = parsed.expression.split()
    celery = TzAwareCrontab(minute, hour, dow, dom, month, tz=UTC, app=Celery(set_as_current=False))
    assert parsed.minutes == celery.minute
    assert parsed.hours == celery.hour
    assert parsed.days == celery.day_of_month
    assert parsed.months == celery.month_of_year
    assert parsed.weekdays == celery.day_of_week


# --------------------------------------------------------------------------- ticks


def test_next_and_previous_tick() -> None:
    every_day_at_9 = cron.parse("0 9 * * *")
    assert cron.next_tick(every_day_at_9, UTC, utc(2026, 5, 1, 8, 59)) == utc(2026, 5, 1, 9)
    assert cron.next_tick(every_day_at_9, UTC, utc(2026, 5, 1, 9)) == utc(2026, 5, 2, 9)
    assert cron.previous_tick(every_day_at_9, UTC, utc(2026, 5, 1, 9)) == utc(2026, 5, 1, 9)
    assert cron.previous_tick(every_day_at_9, UTC, utc(2026, 5, 1, 8, 59)) == utc(2026, 4, 30, 9)
    paris = cron.next_tick(every_day_at_9, PARIS, utc(2026, 5, 1))
    assert paris == utc(2026, 5, 1, 7)  # 09:00 CEST


def test_leap_day_comes_back() -> None:
    leap = cron.parse("0 12 29 2 *")
    assert cron.next_tick(leap, UTC, utc(2026, 1, 1)) == utc(2028, 2, 29, 12)
    assert cron.previous_tick(leap, UTC, utc(2026, 1, 1)) == utc(2024, 2, 29, 12)


def test_spring_forward_in_paris() -> None:
    """2026-03-29, 02:00 → 03:00: 02:30 does not exist and runs at 03:30 CEST, once; the
    day's other ticks are where they always are."""
    day = (utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    assert ticks("30 2 * * *", "Europe/Paris", *day) == [
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 30, 0, 30),
    ]
    assert ticks("0 3 * * *", "Europe/Paris", *day) == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 1)]
    hourly = ticks("30 * * * *", "Europe/Paris", utc(2026, 3, 28, 23), utc(2026, 3, 29, 3))
    # 00:30 CET, 01:30 CET, (02:30 → 03:30 CEST), 04:30 CEST: one per real hour, none twice.
    assert hourly == [
        utc(2026, 3, 28, 23, 30),
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 29, 2, 30),
    ]


def test_fall_back_in_paris() -> None:
    """2026-10-25, 03:00 → 02:00: 02:30 happens twice and runs once, at its first occurrence."""
    day = (utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert ticks("30 2 * * *", "Europe/Paris", *day) == [
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]
    every_15 = ticks("*/15 * * * *", "Europe/Paris", utc(2026, 10, 24, 23), utc(2026, 10, 25, 3))
    # The wall clock's 02:00-02:45 happen twice; each wall-clock time runs once, so the real
    # hour of the second pass (01:00-02:00 UTC) has no tick: 01:15 → 03:45, 11 ticks.
    assert len(every_15) == len(set(every_15)) == 11
    assert not [t for t in every_15 if utc(2026, 10, 25, 1) <= t < utc(2026, 10, 25, 2)]


@pytest.mark.parametrize(
    ("expression", "window"),
    [
        ("30 2 * * *", (utc(2026, 3, 27, 12), utc(2026, 3, 31, 12))),
        ("30 2 * * *", (utc(2026, 10, 23, 12), utc(2026, 10, 27, 12))),
        ("0 3 * * *", (utc(2026, 10, 23, 12), utc(2026, 10, 27, 12))),
        ("*/15 * * * *", (utc(2026, 3, 28, 22), utc(2026, 3, 29, 4))),
        ("*/15 * * * *", (utc(2026, 10, 24, 22), utc(2026, 10, 25, 4))),
        ("0 9 * * 1-5", (utc(2026, 3, 25), utc(2026, 4, 2))),
    ],
)
def test_ticks_are_when_beat_fires(expression: str, window: tuple[datetime, datetime]) -> None:
    """nextRunAt is true: the ticks computed here are the moments django-celery-beat's beat
    fires the schedule, through both changes of the clock."""
    assert ticks(expression, "Europe/Paris", *window) == beat_firings(
        expression, "Europe/Paris", *window
    )
