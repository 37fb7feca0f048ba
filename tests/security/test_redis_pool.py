"""Capture with REDIS_URL: a bounded pool that waits, and no failed capture when Redis is down or slow.

Each test runs its own redis-server on a free port (tests/fakes/redis_server.py) and stops, restarts
or pauses it while the app is serving.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.kit.state import state_of
from tests.conftest import example_lead
from tests.fakes.redis_server import RedisServer

URL = "/v1/api/leads"
pytestmark = pytest.mark.redis


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            from leadflow.security.tokens import create_token

            async with state_of(app).engine.begin() as conn:
                token = (await create_token(conn, name="a", role="admin")).token
            created = await client.post(
                "/v1/api/campaigns",
                headers={"Authorization": f"Bearer {token}"},
                json={"id": "rd", "name": "Redis", "campaign_type": "service"},
            )
            assert created.status_code == 201, created.text
            yield app, client


def _lead(tag: str, i: int) -> dict[str, Any]:
    body = example_lead(email=f"{tag}{i}@company-redis.com")
    body["campaign_id"] = "rd"
    return body


async def _burst(client: httpx.AsyncClient, tag: str, count: int) -> Counter[int]:
    responses = await asyncio.gather(*(client.post(URL, json=_lead(tag, i)) for i in range(count)))
    return Counter(r.status_code for r in responses)


async def _stored(app: Any) -> int:
    from sqlalchemy import text

    async with state_of(app).engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM leads"))).scalar_one())


def _fallback_metric() -> float:
    return REGISTRY.get_sample_value("leadflow_rate_limit_storage_fallbacks_total") or 0.0


async def test_a_burst_larger_than_the_pool_waits_for_connections(
    settings_factory: Callable[..., Settings], redis_server: RedisServer
) -> None:
    # Generous socket timeout: on a busy machine a 0.5 s read can time out, which is not what this tests.
    settings = settings_factory(
        redis_url=redis_server.url,
        redis_pool_size=4,
        redis_pool_timeout_seconds=10,
        redis_socket_timeout_seconds=10,
    )
    async with running(settings) as (app, client):
        pool = state_of(app).guard.pool
        assert pool.max_connections == 4
        assert await _burst(client, "burst", 200) == {201: 200}
        assert state_of(app).guard.fallbacks == 0  # every counter went to Redis: the burst waited
        assert 1 <= redis_server.clients() <= 4  # the pool's connections, kept open
        assert redis_server.keys() > 0
        assert await _stored(app) == 200


async def test_redis_stopped_mid_run_capture_goes_on_with_process_counters(
    settings_factory: Callable[..., Settings], redis_server: RedisServer
) -> None:
    settings = settings_factory(redis_url=redis_server.url, redis_retry_seconds=0)
    before = _fallback_metric()
    async with running(settings) as (app, client):
        assert await _burst(client, "up", 20) == {201: 20}
        assert state_of(app).guard.fallbacks == 0
        redis_server.stop()
        assert await _burst(client, "down", 50) == {201: 50}
        assert state_of(app).guard.fallbacks >= 50  # retry period 0: every request tried Redis first
        assert _fallback_metric() - before >= 50
        redis_server.start()  # an empty server on the same port: counters go back to Redis
        assert redis_server.keys() == 0
        fallbacks = state_of(app).guard.fallbacks
        assert await _burst(client, "back", 10) == {201: 10}
        assert state_of(app).guard.fallbacks == fallbacks
        assert redis_server.keys() > 0
        assert await _stored(app) == 80  # every acknowledged lead is stored


async def test_a_hung_redis_times_out_and_capture_goes_on(
    settings_factory: Callable[..., Settings], redis_server: RedisServer
) -> None:
    settings = settings_factory(
        redis_url=redis_server.url, redis_socket_timeout_seconds=0.2, redis_retry_seconds=600
    )
    async with running(settings) as (app, client):
        assert await _burst(client, "warm", 5) == {201: 5}
        redis_server.pause()
        try:
            assert await _burst(client, "hung", 30) == {201: 30}
        finally:
            redis_server.resume()
        assert state_of(app).guard.fallbacks >= 1
        assert await _stored(app) == 35


async def test_limits_still_hold_per_process_while_redis_is_down(
    settings_factory: Callable[..., Settings], redis_server: RedisServer
) -> None:
    settings = settings_factory(redis_url=redis_server.url, rate_limit_per_ip="3/minute")
    async with running(settings) as (_app, client):
        redis_server.stop()
        codes = [(await client.post(URL, json=_lead("limited", i))).status_code for i in range(5)]
        assert codes == [201, 201, 201, 429, 429]
