"""The retry schedule: exponential backoff with jitter, Retry-After honoured, attempt limits."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadflow.integrations.http import parse_retry_after
from leadflow.pipeline.retry import CAP_SECONDS, backoff_seconds, next_run_at

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 1, 2), (2, 2, 4), (3, 4, 8), (6, 32, 64), (20, CAP_SECONDS / 2, CAP_SECONDS)],
)
def test_backoff_grows_exponentially_within_jitter_bounds(attempt: int, low: float, high: float) -> None:
    rng = random.Random(attempt)
    delays = [backoff_seconds(attempt, rng=rng) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > (high - low) * 0.5  # really jittered


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=2**32))
def test_backoff_never_exceeds_cap_nor_zero(attempt: int, seed: int) -> None:
    delay = backoff_seconds(attempt, rng=random.Random(seed))
    assert 0 < delay <= CAP_SECONDS


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError):
        backoff_seconds(0)


def test_next_run_honours_retry_after_and_limits() -> None:
    assert next_run_at(1, 5, NOW, retry_after=7) == NOW + timedelta(seconds=7)
    assert next_run_at(1, 5, NOW, retry_after=10**9) == NOW + timedelta(seconds=CAP_SECONDS)
    assert next_run_at(5, 5, NOW) is None  # attempts used up: dead-letter
    assert next_run_at(6, 5, NOW, retry_after=1) is None
    when = next_run_at(3, 5, NOW, rng=random.Random(1))
    assert when is not None and NOW + timedelta(seconds=4) <= when <= NOW + timedelta(seconds=8)


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 01 Jan 2026 00:01:00 GMT", now=NOW) == 60.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=NOW) == 0.0
