"""Cron expressions for schedules: parsing, and the tick times they mean in a time zone. Pure.

The grammar is the five classic fields, ``minute hour day-of-month month day-of-week``, each a
``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of those; months
and weekdays may be named (``jan``, ``mon``) and Sunday is 0 or 7. It is the subset that
Celery's ``crontab`` (which django-celery-beat's beat runs) reads the same way, so the ticks
computed here are the moments beat wakes a schedule up. Restricting both the day of month and
the day of week is refused: classic cron ORs the two, Celery ANDs them.

A tick is a local wall-clock time in the schedule's zone that matches every field, read the
way Python's ``zoneinfo`` (and Celery) read wall times: a time that occurs twice (the autumn
change) is its first occurrence, and a time that does not exist (the spring gap) is read with
the offset before the change, i.e. one hour later on the new clock (02:30 → 03:30 in
Europe/Paris). So a daily job never runs twice nor is skipped on a change day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

#: (name, low, high) of each field, in cron order.
FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
MAX_CRON_LENGTH = 200
#: How far ahead (and back) a tick is looked for: Feb 29 comes back within 8 years.
SEARCH_DAYS = 366 * 8 + 2

# ASCII only: ``\w`` and ``\d`` would take other scripts' digits (``٣``, ``²``).
_ITEM_RE = re.compile(r"^(?:(\*)|(\w+)(?:-(\w+))?)(?:/(\d+))?$", re.ASCII)


class InvalidCron(ValueError):
    """A cron expression or time zone that cannot be used; ``message`` says why."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Cron:
    """A parsed expression: its canonical text (names as numbers, Sunday as 0) and the set of
    values each field matches."""

    minute: str
    hour: str
    day_of_month: str
    month: str
    day_of_week: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @property
    def expression(self) -> str:
        return f"{self.minute} {self.hour} {self.day_of_month} {self.month} {self.day_of_week}"

    def matches_day(self, day: date) -> bool:
        return (
            day.month in self.months
            and day.day in self.days
            and day.isoweekday() % 7 in self.weekdays
        )


def _number(text: str, index: int) -> int:
    name, low, high = FIELDS[index]
    names = MONTHS if index == 3 else WEEKDAYS if index == 4 else ()
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + (1 if index == 3 else 0)
    if not (text.isascii() and text.isdigit()):
        raise InvalidCron(f"{text!r} is not a valid {name}.")
    value = int(text)
    if not low <= value <= high:
        raise InvalidCron(f"{name.capitalize()} {value} is out of range {low}-{high}.")
    return value


def _field(text: str, index: int) -> tuple[str, frozenset[int]]:
    """A field's canonical text and its values."""
    name, low, high = FIELDS[index]
    values: set[int] = set()
    canonical: list[str] = []
    for item in text.split(","):
        match = _ITEM_RE.fullmatch(item)
        if not match:
            raise InvalidCron(f"{item!r} is not a valid {name} (use *, a, a-b, */n or a-b/n).")
        star, first, last, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1 or step > high:
            raise InvalidCron(f"Step /{step_text} is out of range 1-{high} in the {name}.")
        if star:
            # '*' spans the whole field (Sunday counted once, as 0).
            start, stop = low, (6 if index == 4 else high)
            text_item = "*" if step == 1 else f"*/{step}"
        else:
            start = _number(first, index)
            if last is None and step_text:
                raise InvalidCron(f"{item!r}: a step needs * or a range (*/n or a-b/n).")
            stop = _number(last, index) if last is not None else start
            if stop < start:
                raise InvalidCron(f"{item!r}: the range must go upwards in the {name}.")
            text_item = str(start) if last is None else f"{start}-{stop}"
            text_item += f"/{step}" if step_text else ""
        values.update(range(start, stop + 1, step))
        canonical.append(text_item)
    if index == 4 and 7 in values:  # Sunday as 7: said as 0, which Celery reads
        values = (values - {7}) | {0}
        canonical = [",".join(str(v) for v in sorted(values))]
    return ",".join(canonical), frozenset(values)


def parse(expression: str) -> Cron:
    """Parse a five-field cron expression; raises :class:`InvalidCron` saying what is wrong."""
    if not isinstance(expression, str) or len(expression) > MAX_CRON_LENGTH:
        raise InvalidCron(f"Must be a cron expression of at most {MAX_CRON_LENGTH} characters.")
    parts = expression.split()
    if len(parts) != 5:
        raise InvalidCron(
            "Must have 5 fields: minute hour day-of-month month day-of-week (e.g. '0 9 * * 1-5')."
        )
    fields = [_field(part, index) for index, part in enumerate(parts)]
    if fields[2][0] != "*" and fields[4][0] != "*":
        raise InvalidCron(
            "Restrict the day of month or the day of week, not both (cron ORs them, Celery "
            "beat ANDs them): use two schedules."
        )
    (minute, minutes), (hour, hours), (dom, days), (month, months), (dow, weekdays) = fields
    cron = Cron(minute, hour, dom, month, dow, minutes, hours, days, months, weekdays)
    if not any(cron.matches_day(date(2024, 1, 1) + timedelta(days=n)) for n in range(SEARCH_DAYS)):
        raise InvalidCron("This expression never matches a date.")
    return cron


@cache
def _zone_names() -> frozenset[str]:
    # ``localtime`` is the host's own zone (a link some systems keep beside the IANA files):
    # a schedule in it would mean another time on every host.
    return frozenset(available_timezones()) - {"localtime"}


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (one the system's zone database has, as django-celery-beat's
    time zone field requires); raises :class:`InvalidCron` for an unknown one."""
    if not isinstance(name, str) or name not in _zone_names():
        shown = repr(name[:100]) if isinstance(name, str) else "this value"
        raise InvalidCron(f"Unknown time zone {shown}; use an IANA name such as Europe/Paris.")
    return ZoneInfo(name)


def _ticks_of_day(cron: Cron, day: date, tz: tzinfo) -> list[datetime]:
    """The UTC instants of ``day``'s ticks, sorted (a wall time read as ``zoneinfo`` reads it:
    fold 0, so twice-occurring times are the first occurrence, missing ones an hour later)."""
    if not cron.matches_day(day):
        return []
    instants = {
        datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)
        for hour in cron.hours
        for minute in cron.minutes
    }
    return sorted(instants)


def next_tick(cron: Cron, tz: tzinfo, after: datetime) -> datetime | None:
    """The first tick strictly after ``after`` (aware), in UTC; None if none within 8 years."""
    day = after.astimezone(tz).date() - timedelta(days=1)
    for n in range(SEARCH_DAYS):
        ticks = [t for t in _ticks_of_day(cron, day + timedelta(days=n), tz) if t > after]
        if ticks:  # the next day too: a zone change can move a neighbour's tick before it
            later = _ticks_of_day(cron, day + timedelta(days=n + 1), tz)
            return min([ticks[0], *(t for t in later if t > after)])
    return None


def previous_tick(cron: Cron, tz: tzinfo, at: datetime) -> datetime | None:
    """The last tick at or before ``at`` (aware), in UTC; None if none within 8 years."""
    day = at.astimezone(tz).date() + timedelta(days=1)
    for n in range(SEARCH_DAYS):
        ticks = [t for t in _ticks_of_day(cron, day - timedelta(days=n), tz) if t <= at]
        if ticks:
            earlier = _ticks_of_day(cron, day - timedelta(days=n + 1), tz)
            return max([ticks[-1], *(t for t in earlier if t <= at)])
    return None
