"""The single-flight TTL cache used for tokens and campaigns on the request path."""

from __future__ import annotations

import asyncio

from leadflow.kit.cache import SingleFlightCache


async def test_concurrent_misses_load_once() -> None:
    calls: list[str] = []

    async def load(key: str) -> str:
        calls.append(key)
        await asyncio.sleep(0.05)
        return key.upper()

    cache: SingleFlightCache[str, str] = SingleFlightCache(60, load)
    results = await asyncio.gather(*(cache.get("a") for _ in range(50)), cache.get("b"))
    assert results == ["A"] * 50 + ["B"]
    assert sorted(calls) == ["a", "b"]
    assert await cache.get("a") == "A" and len(calls) == 2  # cached
    cache.invalidate("a")
    assert await cache.get("a") == "A" and len(calls) == 3


async def test_failures_reach_every_waiter_and_are_not_cached() -> None:
    attempts = 0

    async def load(key: str) -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 1:
            raise RuntimeError("database away")
        return "ok"

    cache: SingleFlightCache[str, str] = SingleFlightCache(60, load)
    results = await asyncio.gather(*(cache.get("k") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await cache.get("k") == "ok"
    assert attempts == 2


async def test_zero_ttl_always_reloads() -> None:
    count = 0

    async def load(key: int) -> int:
        nonlocal count
        count += 1
        return key

    cache: SingleFlightCache[int, int] = SingleFlightCache(0, load)
    for _ in range(3):
        assert await cache.get(7) == 7
    assert count == 3
