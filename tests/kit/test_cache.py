"""The single-flight TTL cache (tokens and campaigns on the request path) and the worker's batch loader."""

from __future__ import annotations

import asyncio

from leadflow.kit.cache import BatchLoader, SingleFlightCache


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


# --- BatchLoader -----------------------------------------------------------------------------------


async def test_loads_in_one_turn_become_one_fetch() -> None:
    fetched: list[list[int]] = []

    async def fetch(keys: list[int]) -> dict[int, str]:
        fetched.append(sorted(keys))
        return {k: f"row {k}" for k in keys if k != 4}

    loader: BatchLoader[int, str] = BatchLoader(fetch)
    results = await asyncio.gather(*(loader.load(k) for k in [1, 2, 3, 2, 4]))
    assert results == ["row 1", "row 2", "row 3", "row 2", None]  # a missing key is None
    assert fetched == [[1, 2, 3, 4]]  # one fetch, each key once
    assert await loader.load(1) == "row 1"  # later loads read again: nothing is cached
    assert fetched[-1] == [1]


async def test_a_failed_fetch_fails_every_waiting_load_and_the_next_turn_retries() -> None:
    calls = 0

    async def fetch(keys: list[int]) -> dict[int, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return {k: k for k in keys}

    loader: BatchLoader[int, int] = BatchLoader(fetch)
    results = await asyncio.gather(loader.load(1), loader.load(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await loader.load(2) == 2
