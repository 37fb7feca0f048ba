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


class BatchLoader(Generic[K, V]):
    """Coalesces look-ups made in the same event-loop turn into one batched fetch.

    The worker starts its claimed jobs together; each one asks for its own lead, member and campaign,
    and instead of one query per job (each a round trip through the single SQLite connection), the keys
    asked for before the loop turns over are fetched with one ``WHERE id IN (...)``. Nothing is cached
    beyond that: a later ``load`` reads the database again, so a job always sees current rows.
    """

    def __init__(self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]]) -> None:
        self._fetch = fetch
        self._pending: dict[K, asyncio.Future[V | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self, key: K) -> V | None:
        future = self._pending.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._pending:
                loop.call_soon(self._dispatch)
            future = loop.create_future()
            self._pending[key] = future
        return await asyncio.shield(future)

    def _dispatch(self) -> None:
        batch, self._pending = self._pending, {}
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: dict[K, asyncio.Future[V | None]]) -> None:
        try:
            found = await self._fetch(list(batch))
        except BaseException as exc:
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
                    future.add_done_callback(lambda f: f.cancelled() or f.exception())
            if not isinstance(exc, Exception):
                raise
            return
        for key, future in batch.items():
            if not future.done():
                future.set_result(found.get(key))
