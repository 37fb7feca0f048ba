"""Abuse protection: rate limits (``limits``) and an escalating lock-out for clients that keep failing.

Counters live in memory by default and in Redis when ``REDIS_URL`` is set, so every API replica shares
them. A client IP that keeps failing (bad tokens, invalid payloads) is locked out for a period that
doubles with each further failure, up to a cap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from leadflow.config import Settings
from leadflow.errors import ApiError

PREFIX = "leadflow"


def make_storage(redis_url: str | None) -> Storage:
    """Memory for one process; Redis (through redis-py) so that every replica shares counters."""
    if not redis_url:
        return MemoryStorage()
    url = redis_url.removeprefix("async+")
    return RedisStorage("async+" + url, implementation="redispy", key_prefix="leadflow")


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


class Guard:
    """Rate limits and lock-outs for the public capture path (and failed authentication)."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.storage = storage or make_storage(settings.redis_url)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.per_ip: RateLimitItem = parse(settings.rate_limit_per_ip)
        self.per_campaign: RateLimitItem = parse(settings.rate_limit_per_campaign)
        self.failure_threshold = settings.lockout_threshold
        self.failure_window = settings.lockout_window_seconds
        self.lockout_base = settings.lockout_base_seconds
        self.lockout_cap = settings.lockout_max_seconds

    async def _check(self, item: RateLimitItem, *ids: str) -> Verdict:
        if await self.limiter.hit(item, PREFIX, *ids):
            return Verdict(True, item.amount, -1, 0.0)  # the common case: no second round-trip
        stats = await self.limiter.get_window_stats(item, PREFIX, *ids)
        return Verdict(False, item.amount, stats.remaining, max(0.0, stats.reset_time - time.time()))

    async def check_ip(self, ip: str) -> Verdict:
        return await self._check(self.per_ip, "ip", ip)

    async def check_campaign(self, campaign_id: str) -> Verdict:
        return await self._check(self.per_campaign, "campaign", campaign_id)

    # -- escalating lock-out ------------------------------------------------------------------------
    async def locked_for(self, ip: str) -> float:
        """Seconds this client is still locked out (0 when it is not)."""
        key = f"{PREFIX}/lock/{ip}"
        if await self.storage.get(key) <= 0:
            return 0.0
        expiry = float(await self.storage.get_expiry(key))
        return max(0.0, expiry - time.time())

    async def record_failure(self, ip: str) -> float:
        """Count a failure; past the threshold lock the client out for base * 2^(excess), capped."""
        failures = await self.storage.incr(f"{PREFIX}/fail/{ip}", int(self.failure_window))
        excess = failures - self.failure_threshold - 1  # the threshold's worth of failures is tolerated
        if excess < 0:
            return 0.0
        duration = int(min(self.lockout_cap, self.lockout_base * (2**excess)))
        key = f"{PREFIX}/lock/{ip}"
        await self.storage.clear(key)
        await self.storage.incr(key, duration)
        return float(duration)

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
