"""Retry schedule: exponential backoff with jitter, Retry-After honoured, per-job attempt limits."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

BASE_SECONDS = 2.0
FACTOR = 2.0
CAP_SECONDS = 3600.0


def backoff_seconds(
    attempt: int,
    *,
    base: float = BASE_SECONDS,
    factor: float = FACTOR,
    cap: float = CAP_SECONDS,
    rng: random.Random | None = None,
) -> float:
    """Delay before try ``attempt + 1`` after try ``attempt`` (1-based) failed.

    Exponential growth capped at ``cap``, with "equal jitter": half fixed, half random, so retries of
    many jobs that failed together spread out but none retries immediately.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    ceiling = min(cap, base * factor ** (attempt - 1))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def next_run_at(
    attempt: int,
    max_attempts: int,
    now: datetime,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again, or None when the attempts are used up (dead-letter)."""
    if attempt >= max_attempts:
        return None
    if retry_after is not None and retry_after >= 0:
        delay = min(retry_after, CAP_SECONDS)
    else:
        delay = backoff_seconds(attempt, rng=rng)
    return now + timedelta(seconds=delay)
