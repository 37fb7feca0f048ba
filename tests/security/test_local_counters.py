"""In-process rate-limit counters: the same answers as the limits/memory storage they replace."""

from __future__ import annotations

from collections.abc import Callable

from limits.aio.storage import MemoryStorage

from leadflow.config import Settings
from leadflow.security.ratelimit import Guard, LocalCounters


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_moving_window() -> None:
    clock = Clock()
    counters = LocalCounters(clock)
    assert [counters.hit("ip/a", 3, 60)[0] for _ in range(4)] == [True, True, True, False]
    allowed, remaining, reset = counters.hit("ip/a", 3, 60)
    assert (allowed, remaining, reset) == (False, 0, 60.0)
    assert counters.hit("ip/b", 3, 60)[0]  # keys are independent
    clock.now += 30
    assert counters.hit("ip/a", 3, 60) == (False, 0, 30.0)
    clock.now += 30  # the first three hits are exactly at the edge: still in the window
    assert not counters.hit("ip/a", 3, 60)[0]
    clock.now += 0.001
    assert counters.hit("ip/a", 3, 60) == (True, 2, 0.0)  # all three left the window


def test_counters_expire_from_their_first_increment_and_stale_keys_are_swept() -> None:
    clock = Clock()
    counters = LocalCounters(clock)
    assert counters.incr("fail/a", 10) == 1
    clock.now += 6
    assert counters.incr("fail/a", 10) == 2
    assert counters.expires_in("fail/a") == 4.0
    clock.now += 4
    assert counters.get("fail/a") == 0
    assert counters.incr("fail/a", 10) == 1
    counters.clear("fail/a")
    assert counters.get("fail/a") == 0 and counters.expires_in("fail/a") == 0.0
    counters.hit("ip/old", 5, 1)
    counters.incr("lock/old", 1)
    clock.now += 2
    counters.SWEEP_EVERY = 1
    counters.hit("ip/new", 5, 1)
    assert set(counters._windows) == {"ip/new"} and not counters._counters


async def test_guard_answers_like_the_limits_memory_storage(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(rate_limit_per_ip="3/minute", lockout_threshold=2, lockout_base_seconds=10)
    local, limits = Guard(settings), Guard(settings, MemoryStorage())
    assert local.local is not None and limits.local is None
    for guard in (local, limits):
        verdicts = [await guard.check_ip("198.51.100.1") for _ in range(5)]
        assert [v.allowed for v in verdicts] == [True, True, True, False, False]
        assert [v.remaining for v in verdicts] == [-1, -1, -1, 0, 0]
        assert 59 <= verdicts[-1].reset_after <= 60
        assert verdicts[-1].headers()["Retry-After"] == "60"
        assert [await guard.record_failure("198.51.100.1") for _ in range(5)] == [0, 0, 10, 20, 40]
        assert 39 < await guard.locked_for("198.51.100.1") <= 40
        assert await guard.locked_for("198.51.100.2") == 0


def test_redis_keeps_the_shared_storage(settings_factory: Callable[..., Settings]) -> None:
    guard = Guard(settings_factory(redis_url="redis://127.0.0.1:1/0"))
    assert guard.local is None
