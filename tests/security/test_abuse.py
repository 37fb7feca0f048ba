"""Rate limits, lock-out, trusted proxies and bot defences on the capture path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.kit.state import state_of
from leadflow.security.clientip import client_ip, parse_networks
from tests.conftest import Harness, example_lead
from tests.fakes.redis_server import RedisServer

URL = "/v1/api/leads"


@asynccontextmanager
async def running(
    settings: Settings, client_addr: str = "203.0.113.7"
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_addr, 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


async def _campaign(app: Any, client: httpx.AsyncClient, campaign_id: str = "rl") -> dict[str, str]:
    from leadflow.security.tokens import create_token

    async with state_of(app).engine.begin() as conn:
        token = (await create_token(conn, name="a", role="admin")).token
    headers = {"Authorization": f"Bearer {token}"}
    await client.post(
        "/v1/api/campaigns",
        headers=headers,
        json={"id": campaign_id, "name": "RL", "campaign_type": "service"},
    )
    return headers


def _lead(i: int, campaign_id: str = "rl") -> dict[str, Any]:
    body = example_lead(email=f"rate{i}@company.com")
    body["campaign_id"] = campaign_id
    return body


async def test_per_ip_limit_answers_429_with_headers(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(rate_limit_per_ip="5/minute")
    async with running(settings) as (app, client):
        await _campaign(app, client)
        codes = [(await client.post(URL, json=_lead(i))).status_code for i in range(7)]
        assert codes == [201] * 5 + [429] * 2
        response = await client.post(URL, json=_lead(99))
        assert response.status_code == 429
        body = response.json()
        assert body["error"] == "RATE_LIMITED"
        assert body["code"] == 429
        assert int(response.headers["Retry-After"]) > 0
        assert response.headers["RateLimit-Limit"] == "5"
        assert response.headers["RateLimit-Remaining"] == "0"
        assert 0 < int(response.headers["RateLimit-Reset"]) <= 60


async def test_per_campaign_limit(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(rate_limit_per_campaign="3/hour")
    async with running(settings) as (app, client):
        await _campaign(app, client)
        await _campaign(app, client, "other")
        codes = [(await client.post(URL, json=_lead(i))).status_code for i in range(4)]
        assert codes == [201, 201, 201, 429]
        assert (await client.post(URL, json=_lead(50, "other"))).status_code == 201


async def test_repeated_failures_lock_the_address_out_with_doubling_periods(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(lockout_threshold=3, lockout_base_seconds=10, lockout_max_seconds=25)
    async with running(settings) as (app, client):
        await _campaign(app, client)
        for _ in range(3):
            assert (await client.post(URL, json={"bad": "payload"})).status_code == 400
        guard = state_of(app).guard
        assert await guard.locked_for("203.0.113.7") == 0
        assert (
            await client.post(URL, content=b"{", headers={"Content-Type": "application/json"})
        ).status_code == 400
        first = await guard.locked_for("203.0.113.7")
        assert 5 < first <= 10
        locked = await client.post(URL, json=_lead(1))
        assert locked.status_code == 429
        assert locked.json()["error"] == "TOO_MANY_FAILURES"
        assert 1 <= int(locked.headers["Retry-After"]) <= 10
        # Further failures double the period, up to the cap.
        assert await guard.record_failure("203.0.113.7") == 20
        assert await guard.record_failure("203.0.113.7") == 25
        # Another address is unaffected; bad bearer tokens count too.
        async with running(settings, "198.51.100.9") as (app2, other):
            await _campaign(app2, other)
            for _ in range(4):
                await other.get("/v1/api/campaigns", headers={"Authorization": "Bearer lf_wrong"})
            assert (
                await other.get("/v1/api/campaigns", headers={"Authorization": "Bearer lf_wrong"})
            ).status_code == 429


@pytest.mark.redis
async def test_two_replicas_share_counters_in_redis(
    settings_factory: Callable[..., Settings], redis_server: RedisServer
) -> None:
    redis_url = redis_server.url  # our own server: the shared one is never flushed
    settings = settings_factory(rate_limit_per_ip="4/minute", redis_url=redis_url)
    async with running(settings) as (app_a, a), running(settings) as (_app_b, b):
        await _campaign(app_a, a)
        codes = []
        for i in range(6):
            client = a if i % 2 == 0 else b
            codes.append((await client.post(URL, json=_lead(i))).status_code)
        assert codes == [201, 201, 201, 201, 429, 429]


def test_client_ip_trusts_forwarded_for_only_from_trusted_proxies() -> None:
    proxies = parse_networks(["10.0.0.0/8", "::1/128"])
    assert client_ip("203.0.113.5", "1.2.3.4", proxies) == "203.0.113.5"  # untrusted peer: header ignored
    assert client_ip("10.1.2.3", "1.2.3.4", proxies) == "1.2.3.4"
    assert (
        client_ip("10.1.2.3", "6.6.6.6, 1.2.3.4, 10.9.9.9", proxies) == "1.2.3.4"
    )  # spoofed left hop ignored
    assert client_ip("10.1.2.3", "garbage", proxies) == "10.1.2.3"
    assert client_ip("10.1.2.3", None, proxies) == "10.1.2.3"
    assert client_ip("203.0.113.5", "1.2.3.4", ()) == "203.0.113.5"


async def test_forwarded_for_through_the_app(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(trusted_proxies=["10.0.0.0/8"], rate_limit_per_ip="2/minute")
    async with running(settings, "10.0.0.2") as (app, client):
        await _campaign(app, client)
        for i in range(2):
            response = await client.post(URL, json=_lead(i), headers={"X-Forwarded-For": "1.1.1.1"})
            assert response.status_code == 201
        # Another real client behind the same proxy has its own budget.
        assert (
            await client.post(URL, json=_lead(9), headers={"X-Forwarded-For": "2.2.2.2"})
        ).status_code == 201
        assert (
            await client.post(URL, json=_lead(10), headers={"X-Forwarded-For": "1.1.1.1"})
        ).status_code == 429


@pytest.mark.parametrize(
    ("form", "stored"),
    [
        ({"honeypot": "http://spam.example"}, False),
        ({"fill_time_seconds": 0.4}, False),
        ({"started_at": "2025-10-03T10:29:59Z", "timestamp": "2025-10-03T10:30:00Z"}, False),
        # A start without a zone is UTC (it was a 500: naive minus aware).
        ({"started_at": "2025-10-03T10:29:59", "timestamp": "2025-10-03T10:30:00Z"}, False),
        ({"started_at": "2025-10-03T10:20:00", "timestamp": "2025-10-03T10:30:00Z"}, True),
        ({"fill_time_seconds": 12}, True),
        ({"honeypot": ""}, True),
    ],
)
async def test_bot_defences(
    harness: Harness, campaign: dict[str, Any], form: dict[str, Any], stored: bool
) -> None:
    body = example_lead()
    body["form_metadata"].update(form)
    response = await harness.client.post(URL, json=body)
    if stored:
        assert response.status_code == 201
    else:
        assert response.status_code == 400
        assert response.json()["error"] == "SUBMISSION_REJECTED"
    assert await harness.scalar("SELECT count(*) FROM leads") == (1 if stored else 0)


async def test_disposable_addresses_are_flagged_or_refused(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running(settings_factory()) as (app, client):
        admin = await _campaign(app, client)
        created = await client.post(
            URL, json={**_lead(1), "contact": {**_lead(1)["contact"], "email": "x@mailinator.com"}}
        )
        assert created.status_code == 201
        lead = (await client.get(f"/v1/api/leads/{created.json()['lead_id']}", headers=admin)).json()
        assert lead["score_breakdown"]["rules"][0]["reason"] == "disposable e-mail domain"
    async with running(settings_factory(reject_disposable_emails=True)) as (app, client):
        await _campaign(app, client)
        refused = await client.post(
            URL, json={**_lead(1), "contact": {**_lead(1)["contact"], "email": "x@mailinator.com"}}
        )
        assert refused.status_code == 400
        assert refused.json()["error"] == "DISPOSABLE_EMAIL"
