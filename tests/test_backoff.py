from __future__ import annotations

import pytest

from asyncqueue_django.backoff import base_delay, retry_delay


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("exponential", [1, 2, 4, 8, 16, 32]),
        ("linear", [1, 2, 3, 4, 5, 6]),
        ("fixed", [1, 1, 1, 1, 1, 1]),
    ],
)
def test_sequences_without_jitter(strategy: str, expected: list[int]) -> None:
    delays = [retry_delay(strategy, n, base=1, max_delay=3600, jitter=0) for n in range(1, 7)]
    assert delays == expected


def test_base_scales_every_strategy() -> None:
    assert [base_delay("exponential", n, 0.5) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert [base_delay("linear", n, 2) for n in (1, 2, 3)] == [2, 4, 6]


def test_max_delay_caps_the_sequence_and_huge_retry_numbers() -> None:
    assert retry_delay("exponential", 12, base=1, max_delay=60, jitter=0) == 60
    assert retry_delay("exponential", 10_000, base=1, max_delay=60, jitter=0) == 60


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_jitter_stays_within_bounds(n: int) -> None:
    nominal = 2 ** (n - 1)
    low = retry_delay("exponential", n, base=1, max_delay=3600, jitter=0.1, rand=lambda a, b: a)
    high = retry_delay("exponential", n, base=1, max_delay=3600, jitter=0.1, rand=lambda a, b: b)
    assert low == pytest.approx(nominal * 0.9)
    assert high == pytest.approx(nominal * 1.1)
    for _ in range(200):
        value = retry_delay("exponential", n, base=1, max_delay=3600, jitter=0.1)
        assert nominal * 0.9 <= value <= nominal * 1.1


def test_retry_after_is_a_floor_but_not_above_the_cap() -> None:
    assert retry_delay("exponential", 1, base=1, max_delay=3600, jitter=0, retry_after=30) == 30
    assert retry_delay("exponential", 5, base=1, max_delay=3600, jitter=0, retry_after=3) == 16
    assert retry_delay("fixed", 1, base=1, max_delay=10, jitter=0, retry_after=30) == 10


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="retry_number"):
        base_delay("exponential", 0, 1)
    with pytest.raises(ValueError, match="unknown backoff"):
        base_delay("fibonacci", 1, 1)
