"""Abuse protection: rate limits and an escalating lock-out for clients that keep failing.

Counters live in this process by default (:class:`LocalCounters`) and in Redis (through ``limits``)
when ``REDIS_URL`` is set, so that every API replica shares them. A client IP that keeps failing (bad
tokens, invalid payloads) is locked out for a period that doubles with each further failure, up to a
cap.

Redis is reached through one bounded, blocking connection pool per process (``REDIS_POOL_SIZE``
connections; a request waits up to ``REDIS_POOL_TIMEOUT_SECONDS`` for a free one). When Redis is
unreachable, slow (``REDIS_SOCKET_TIMEOUT_SECONDS``) or the pool stays exhausted, the process keeps
accepting leads: it counts in its own memory for ``REDIS_RETRY_SECONDS``, logs a warning
(``rate_limit_storage_unavailable``) and counts the event in
``leadflow_rate_limit_storage_fallbacks_total``, then tries Redis again. Limits are then enforced per
process rather than across replicas, for that time; no request fails because of Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from leadflow.config import Settings
from leadflow.errors import ApiError
from leadflow.observability import metrics

PREFIX = "leadflow"
log = structlog.get_logger("leadflow.ratelimit")
# What a failing or slow Redis raises through limits / redis-py (pool exhausted: redis ConnectionError).
STORAGE_ERRORS = (RedisError, StorageError, OSError, asyncio.TimeoutError)


def redis_pool(settings: Settings) -> BlockingConnectionPool:
    """One bounded pool per process: at most REDIS_POOL_SIZE connections, callers wait for a free one."""
    url = (settings.redis_url or "").removeprefix("async+")
    return BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_pool_size,
        timeout=settings.redis_pool_timeout_seconds,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=settings.redis_socket_timeout_seconds,
        # No retries inside redis-py: a failure falls back to process counters at once (Guard).
        retry=Retry(NoBackoff(), 0),
    )


def make_storage(settings: Settings, pool: BlockingConnectionPool | None = None) -> Storage:
    """Memory for one process; Redis (through redis-py) so that every replica shares counters."""
    if not settings.redis_url:
        return MemoryStorage()
    url = settings.redis_url.removeprefix("async+")
    options: dict[str, Any] = {"connection_pool": pool or redis_pool(settings)}
    return RedisStorage("async+" + url, implementation="redispy", key_prefix=PREFIX, **options)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the window frees a slot

    def headers(self) -> dict[str, str]:
        """The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers) and Retry-After."""
        reset = max(1, int(self.reset_after + 0.999))
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(reset)
        return headers


class LocalCounters:
    """In-process counters with the semantics of ``limits``' moving window and memory storage.

    The capture path checks three counters per request; through ``limits``' async memory storage
    each check took an asyncio lock, built its key from the limit's parts and shifted a list, about
    a tenth of the endpoint's CPU. Here a moving window is a deque of hit times (at most ``amount``
    of them), and a fixed-window counter (the lock-out's) a value with an expiry. Keys that have
    nothing left in their window are swept out now and then, so memory follows the active clients.
    """

    SWEEP_EVERY = 10_000  # hits between sweeps of stale keys

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[deque[float], float]] = {}  # key -> (hit times, window length)
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, expires at)
        self._hits = 0

    def hit(self, key: str, amount: int, window: float) -> tuple[bool, int, float]:
        """Count a hit if the window has room: (allowed, remaining, seconds until a slot frees)."""
        now = self._clock()
        entry = self._windows.get(key)
        if entry is None:
            entry = self._windows[key] = (deque(), window)
        times = entry[0]
        horizon = now - window
        while times and times[0] < horizon:
            times.popleft()
        if len(times) < amount:
            times.append(now)
            verdict = (True, amount - len(times), 0.0)
        else:
            verdict = (False, amount - len(times), max(0.0, times[0] + window - now))
        self._hits += 1
        if self._hits >= self.SWEEP_EVERY:  # after this hit is recorded: its key is never stale
            self._sweep(now)
        return verdict

    def _sweep(self, now: float) -> None:
        self._hits = 0
        for key in [
            k for k, (times, window) in self._windows.items() if not times or times[-1] < now - window
        ]:
            del self._windows[key]
        for key in [k for k, (_, expires) in self._counters.items() if expires <= now]:
            del self._counters[key]

    def get(self, key: str) -> int:
        entry = self._counters.get(key)
        if entry is None:
            return 0
        if entry[1] <= self._clock():
            del self._counters[key]
            return 0
        return entry[0]

    def expires_in(self, key: str) -> float:
        entry = self._counters.get(key)
        return max(0.0, entry[1] - self._clock()) if entry is not None else 0.0

    def incr(self, key: str, expiry: float) -> int:
        """Add one; the expiry is set by the first increment (as ``limits``' memory storage does)."""
        value = self.get(key) + 1
        expires = self._counters[key][1] if value > 1 else self._clock() + expiry
        self._counters[key] = (value, expires)
        return value

    def clear(self, key: str) -> None:
        self._counters.pop(key, None)


class Guard:
    """Rate limits and lock-outs for the public capture path (and failed authentication)."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        # In-process counters unless the counters must be shared (Redis) or a storage is given.
        self.local = LocalCounters() if storage is None and not settings.redis_url else None
        self.pool = redis_pool(settings) if storage is None and settings.redis_url else None
        self.storage = storage or make_storage(settings, self.pool)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.per_ip: RateLimitItem = parse(settings.rate_limit_per_ip)
        self.per_campaign: RateLimitItem = parse(settings.rate_limit_per_campaign)
        self.failure_threshold = settings.lockout_threshold
        self.failure_window = settings.lockout_window_seconds
        self.lockout_base = settings.lockout_base_seconds
        self.lockout_cap = settings.lockout_max_seconds
        # While the shared storage fails: this process's own counters, until _shared_again.
        self.fallback = LocalCounters()
        self.retry_seconds = settings.redis_retry_seconds
        self._shared_again = 0.0
        self.fallbacks = 0

    async def close(self) -> None:
        """Close the Redis connections of this process (at shutdown)."""
        if self.pool is not None:
            await self.pool.disconnect()

    def _counters(self) -> LocalCounters | None:
        """The in-process counters to use now, or None to use the shared storage."""
        if self.local is not None:
            return self.local
        return self.fallback if time.monotonic() < self._shared_again else None

    def _storage_failed(self, exc: BaseException) -> LocalCounters:
        now = time.monotonic()
        if now >= self._shared_again:  # one warning per outage period, not one per request
            log.warning(
                "rate_limit_storage_unavailable",
                exc_type=type(exc).__name__,
                fallback="process_counters",
                retry_in_seconds=self.retry_seconds,
            )
        self._shared_again = now + self.retry_seconds
        self.fallbacks += 1
        metrics.RATE_LIMIT_FALLBACKS.inc()
        return self.fallback

    @staticmethod
    def _local_check(counters: LocalCounters, item: RateLimitItem, ids: tuple[str, ...]) -> Verdict:
        allowed, remaining, reset = counters.hit("/".join(ids), item.amount, item.get_expiry())
        return Verdict(allowed, item.amount, remaining if not allowed else -1, reset)

    async def _check(self, item: RateLimitItem, *ids: str) -> Verdict:
        counters = self._counters()
        if counters is not None:
            return self._local_check(counters, item, ids)
        try:
            if await self.limiter.hit(item, PREFIX, *ids):
                return Verdict(True, item.amount, -1, 0.0)  # the common case: no second round-trip
            stats = await self.limiter.get_window_stats(item, PREFIX, *ids)
        except STORAGE_ERRORS as exc:
            return self._local_check(self._storage_failed(exc), item, ids)
        return Verdict(False, item.amount, stats.remaining, max(0.0, stats.reset_time - time.time()))

    async def check_ip(self, ip: str) -> Verdict:
        return await self._check(self.per_ip, "ip", ip)

    async def check_campaign(self, campaign_id: str) -> Verdict:
        return await self._check(self.per_campaign, "campaign", campaign_id)

    # -- escalating lock-out ------------------------------------------------------------------------
    async def locked_for(self, ip: str) -> float:
        """Seconds this client is still locked out (0 when it is not)."""
        key = f"{PREFIX}/lock/{ip}"
        counters = self._counters()
        if counters is None:
            try:
                if await self.storage.get(key) <= 0:
                    return 0.0
                expiry = float(await self.storage.get_expiry(key))
                return max(0.0, expiry - time.time())
            except STORAGE_ERRORS as exc:
                counters = self._storage_failed(exc)
        return counters.expires_in(key) if counters.get(key) > 0 else 0.0

    async def record_failure(self, ip: str) -> float:
        """Count a failure; past the threshold lock the client out for base * 2^(excess), capped."""
        fail_key = f"{PREFIX}/fail/{ip}"
        key = f"{PREFIX}/lock/{ip}"
        counters = self._counters()
        if counters is None:
            try:
                failures = await self.storage.incr(fail_key, int(self.failure_window))
                duration = self._lockout(failures)
                if duration:
                    await self.storage.clear(key)
                    await self.storage.incr(key, duration)
                return float(duration)
            except STORAGE_ERRORS as exc:
                counters = self._storage_failed(exc)
        duration = self._lockout(counters.incr(fail_key, int(self.failure_window)))
        if duration:
            counters.clear(key)
            counters.incr(key, duration)
        return float(duration)

    def _lockout(self, failures: int) -> int:
        """Lock-out seconds after this many failures (0: still tolerated)."""
        excess = failures - self.failure_threshold - 1  # the threshold's worth of failures is tolerated
        if excess < 0:
            return 0
        return int(min(self.lockout_cap, self.lockout_base * (2**excess)))

    async def raise_if_locked(self, ip: str) -> None:
        remaining = await self.locked_for(ip)
        if remaining > 0:
            seconds = str(max(1, int(remaining + 0.999)))
            raise ApiError(
                429,
                "TOO_MANY_FAILURES",
                "Too many failed requests from this address; try again later",
                headers={"Retry-After": seconds},
            )


def rate_limited(verdict: Verdict, what: str) -> ApiError:
    return ApiError(429, "RATE_LIMITED", f"Rate limit exceeded ({what})", headers=verdict.headers())
