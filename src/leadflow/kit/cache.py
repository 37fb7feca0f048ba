"""A small per-process TTL cache whose loads are single-flight.

When an entry expires under load, the first request reloads it and every other request for the same
key waits for that one load, instead of all of them queueing on the database at once (a stampede that
showed up as multi-second tails in the benchmark).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from time import monotonic
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlightCache(Generic[K, V]):
    def __init__(self, ttl: float, loader: Callable[[K], Awaitable[V]], max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self._loader = loader
        self._max = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._pending: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > monotonic():
            return hit[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "unretrieved"
        self._pending[key] = future
        try:
            value = await self._loader(key)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            self._pending.pop(key, None)
        if len(self._entries) >= self._max:
            self._entries.clear()
        if self.ttl > 0:
            self._entries[key] = (monotonic() + self.ttl, value)
        future.set_result(value)
        return value

    def invalidate(self, key: K | None = None) -> None:
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)
