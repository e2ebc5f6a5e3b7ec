"""Retry delays. Pure: no clock, no randomness unless given, no settings access."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime


def base_delay(strategy: str, retry_number: int, base: float) -> float:
    """Delay before retry ``retry_number`` (1-based), before jitter and cap.

    ``exponential``: base·2^(n-1) → 1, 2, 4, 8 … s; ``linear``: base·n → 1, 2, 3 … s;
    ``fixed``: base every time.
    """
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    if strategy == "exponential":
        # Clamp the exponent: 2**1000 would overflow a float long before any cap applies.
        return float(base * (2 ** min(retry_number - 1, 62)))
    if strategy == "linear":
        return float(base * retry_number)
    if strategy == "fixed":
        return float(base)
    raise ValueError(f"unknown backoff strategy {strategy!r}")


def retry_delay(
    strategy: str,
    retry_number: int,
    *,
    base: float,
    max_delay: float,
    jitter: float,
    retry_after: float | None = None,
    rand: Callable[[float, float], float] = random.uniform,
) -> float:
    """The delay to wait: the backoff with ±``jitter`` (a fraction), never less than a
    target's ``Retry-After`` (already capped by the caller), and never more than ``max_delay``.
    """
    delay = base_delay(strategy, retry_number, base)
    if jitter:
        delay *= 1 + rand(-jitter, jitter)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(0.0, min(delay, max_delay))


def schedule_delay(
    schedule: list[float] | tuple[float, ...],
    retry_number: int,
    *,
    jitter: float,
    rand: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """The delay before retry ``retry_number`` (1-based) on a fixed ``schedule`` of seconds
    (webhook re-deliveries), with ±``jitter``; None once the schedule is used up."""
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    if retry_number > len(schedule):
        return None
    delay = float(schedule[retry_number - 1])
    if jitter:
        delay *= 1 + rand(-jitter, jitter)
    return max(0.0, delay)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (RFC 9110 §10.2.3: delta-seconds or an HTTP-date;
    a date in the past is 0), or None when it is neither. ``now`` is a Unix time (tests)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also accepts "²"
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now_dt = datetime.fromtimestamp(now if now is not None else time.time(), tz=UTC)
    return max(0.0, (when - now_dt).total_seconds())
