"""Capture while the database is down: PostgreSQL/MariaDB behind a TCP proxy that the test cuts.

Under concurrent load the proxy is cut (connections reset, new ones refused): captures keep answering
202 from the spool (never 5xx), reads and status answer 503, /healthz stays 200 "degraded"; once the
proxy is back the spool is replayed and every acknowledged lead is in the database under the id its
client got, duplicates linked rather than dropped.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.kit.state import state_of
from leadflow.security.tokens import create_token
from tests.conftest import TEST_KEY, example_lead
from tests.fakes.tcp_proxy import TcpProxy

CAMPAIGN = {
    "id": "outage-campaign",
    "name": "Outage",
    "campaign_type": "service",
    "services": ["Nextcloud Installation"],
}
CONCURRENCY = 12
_serial = itertools.count()


def _lead(email: str | None = None) -> dict[str, Any]:
    body = example_lead(email=email or f"outage{next(_serial)}@company.com")
    body["campaign_id"] = CAMPAIGN["id"]
    return body


async def _load(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Send ``bodies`` with CONCURRENCY requests in flight; answers in the order of ``bodies``."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(body: dict[str, Any]) -> httpx.Response:
        async with gate:
            return await client.post("/v1/api/leads", json=body)

    return list(await asyncio.gather(*(one(b) for b in bodies)))


async def _proxy(database_url: str) -> TcpProxy:
    url = make_url(database_url)
    default = 5432 if url.drivername.startswith("postgresql") else 3306
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or default)
    await proxy.start()
    return proxy


def _settings(database_url: str, proxy: TcpProxy, tmp_path: Path) -> Settings:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return Settings(
        database_url=url.render_as_string(hide_password=False),
        encryption_key=TEST_KEY,  # type: ignore[arg-type]
        leadflow_env="test",
        encryption_key_file=tmp_path / "unused.key",
        run_worker=False,
        rate_limit_per_ip="100000/minute",
        rate_limit_per_campaign="100000/hour",
        lockout_threshold=100000,
        gc_freeze=False,
        capture_spool_dir=tmp_path / "spool",
        db_connect_timeout_seconds=2.0,
        db_command_timeout_seconds=2.0,
    )


@pytest.mark.parametrize("backend", ["postgres", "mysql"], indirect=True)
async def test_capture_through_a_database_outage(database_url: str, tmp_path: Path) -> None:
    proxy = await _proxy(database_url)
    app = create_app(_settings(database_url, proxy, tmp_path))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                await _outage(app, client, proxy)
    finally:
        await proxy.close()


async def _outage(app: Any, client: httpx.AsyncClient, proxy: TcpProxy) -> None:
    engine = state_of(app).engine
    spool = state_of(app).writer.spool
    assert spool is not None
    async with engine.begin() as conn:
        token = (await create_token(conn, name="outage", role="admin")).token
    admin = {"Authorization": f"Bearer {token}"}
    assert (await client.post("/v1/api/campaigns", headers=admin, json=CAMPAIGN)).status_code == 201
    other = dict(CAMPAIGN, id="never-loaded-campaign")
    assert (await client.post("/v1/api/campaigns", headers=admin, json=other)).status_code == 201

    # Phase A, the database up: 201s.
    before = [_lead() for _ in range(30)]
    answers_a = await _load(client, before)
    assert [r.status_code for r in answers_a] == [201] * 30
    acknowledged = {r.json()["lead_id"] for r in answers_a}
    assert (
        await client.get(f"/v1/api/leads/{answers_a[0].json()['lead_id']}/status", headers=admin)
    ).status_code == 200

    # Phase B: the proxy is cut while requests are in flight, and stays cut.
    during = [_lead() for _ in range(40)]
    during += [dict(before[0]), dict(before[1])]  # people stored before the outage: duplicates
    during += [_lead("twice-in-outage@company.com"), _lead("twice-in-outage@company.com")]
    half = len(during) // 2
    first_half = asyncio.create_task(_load(client, during[:half]))
    await asyncio.sleep(0)  # some of them are on their way to the database
    await proxy.cut()
    answers_b = await first_half + await _load(client, during[half:])
    # ... and stays cut for a while under load: until the replayer has found it down three times.
    for _ in range(100):
        if spool.replay_waits >= 3:
            break
        answers_b += await _load(client, [_lead() for _ in range(4)])
        await asyncio.sleep(0.1)
    assert spool.replay_waits >= 3
    codes_b = Counter(r.status_code for r in answers_b)
    assert set(codes_b) <= {201, 202, 409}, codes_b  # never a 5xx
    assert codes_b[202] >= len(answers_b) - half, codes_b  # everything after the cut is spooled
    spooled_ids = {r.json()["lead_id"] for r in answers_b if r.status_code == 202}
    acknowledged |= {r.json()["lead_id"] for r in answers_b if r.status_code in (201, 202)}
    assert all(r.json()["message"].startswith("Lead accepted") for r in answers_b if r.status_code == 202)
    assert spool.pending == len(spooled_ids)

    # A campaign this process never loaded cannot be checked: 503 (in the error shape), not a 500.
    unknown = await client.post("/v1/api/leads", json=dict(_lead(), campaign_id=other["id"]))
    assert unknown.status_code == 503 and unknown.json()["error"] == "SERVICE_UNAVAILABLE", unknown.text

    # Meanwhile: status and reads answer 503 in the error shape; the health check stays up (degraded).
    pending_id = sorted(spooled_ids)[0]
    status = await client.get(f"/v1/api/leads/{pending_id}/status", headers=admin)
    assert status.status_code == 503 and status.json()["error"] == "SERVICE_UNAVAILABLE"
    listing = await client.get("/v1/api/leads", headers=admin)
    assert listing.status_code == 503 and listing.json()["error"] == "SERVICE_UNAVAILABLE", listing.text
    assert listing.headers["Retry-After"] == "5"
    health = await client.get("/healthz")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "degraded" and health.json()["database"] == "unavailable"
    assert health.json()["spooled"] == len(spooled_ids)

    # Recovery: the replayer finds the database and empties the spool (bounded wait).
    await proxy.restore()
    for _ in range(600):
        if spool.pending == 0:
            break
        await asyncio.sleep(0.05)
    assert spool.pending == 0, "the spool was not replayed"
    assert list((spool.directory).glob("*.spool")) == []
    assert spool.replayed_total == len(spooled_ids)

    # Phase C, after recovery: 201 again, and a spooled person is now a duplicate (409).
    after = [_lead() for _ in range(10)] + [_lead("twice-in-outage@company.com")]
    answers_c = await _load(client, after)
    assert [r.status_code for r in answers_c] == [201] * 10 + [409]
    acknowledged |= {r.json()["lead_id"] for r in answers_c[:10]}

    # Every acknowledged lead is stored, under the id its client got, with its activity and job.
    async with engine.connect() as conn:
        stored = set(
            (
                await conn.execute(
                    text("SELECT public_id FROM leads WHERE campaign_id = :c"), {"c": CAMPAIGN["id"]}
                )
            )
            .scalars()
            .all()
        )
        jobs = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM jobs j JOIN leads l ON l.id = j.lead_id "
                    "WHERE l.campaign_id = :c AND j.kind = 'lead.process'"
                ),
                {"c": CAMPAIGN["id"]},
            )
        ).scalar()
        linked = (
            await conn.execute(
                text(
                    "SELECT l.public_id, p.public_id FROM leads l JOIN leads p ON p.id = l.previous_lead_id "
                    "WHERE l.campaign_id = :c"
                ),
                {"c": CAMPAIGN["id"]},
            )
        ).all()
        dup_activities = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM lead_activities a JOIN leads l ON l.id = a.lead_id "
                    "WHERE l.campaign_id = :c AND a.activity_type = 'duplicate_submission'"
                ),
                {"c": CAMPAIGN["id"]},
            )
        ).scalar()
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged leads are missing"
    assert stored == acknowledged  # and nothing else
    assert jobs == len(stored)
    first_ids = {r.json()["lead_id"] for r in answers_a[:2]}
    # The two pre-outage people spooled again were stored and linked to their first lead (previous_lead_id
    # and a duplicate_submission activity on it), not dropped; the person who came twice during the
    # outage has both leads, the first one carrying the duplicate_submission activity.
    assert {p for _, p in linked} >= first_ids
    assert dup_activities == 3 + 1  # + the 409 of phase C
    async with engine.connect() as conn:
        twice = (
            await conn.execute(
                text("SELECT count(*) FROM leads WHERE email_hash = :h"),
                {"h": state_of(app).cipher.blind_index("twice-in-outage@company.com")},
            )
        ).scalar()
    assert twice == 2
    replayed = await client.get(f"/v1/api/leads/{pending_id}/status", headers=admin)
    assert replayed.status_code == 200
    print(
        f"outage: {len(answers_a)} before, {dict(codes_b)} during, {len(answers_c)} after; "
        f"{len(spooled_ids)} spooled and replayed, {len(stored)} stored, {len(linked)} linked duplicates"
    )


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_spool_left_by_a_stopped_process_is_replayed_by_the_next_one(
    database_url: str, tmp_path: Path
) -> None:
    proxy = await _proxy(database_url)
    settings = _settings(database_url, proxy, tmp_path)
    try:
        first = create_app(settings)
        async with first.router.lifespan_context(first):
            transport = httpx.ASGITransport(app=first, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                async with state_of(first).engine.begin() as conn:
                    token = (await create_token(conn, name="outage", role="admin")).token
                admin = {"Authorization": f"Bearer {token}"}
                assert (
                    await client.post("/v1/api/campaigns", headers=admin, json=CAMPAIGN)
                ).status_code == 201
                assert (await client.post("/v1/api/leads", json=_lead())).status_code == 201  # campaign known
                await proxy.cut()
                answers = await _load(client, [_lead() for _ in range(8)])
                assert [r.status_code for r in answers] == [202] * 8
            # The process stops while the database is still down: the file stays on disk.
        assert len(list((tmp_path / "spool").glob("*.spool"))) == 1
        await proxy.restore()
        second = create_app(settings)
        async with second.router.lifespan_context(second):
            spool = state_of(second).writer.spool
            assert spool is not None and spool.pending == 8  # adopted at start-up
            for _ in range(600):
                if spool.pending == 0:
                    break
                await asyncio.sleep(0.05)
            assert spool.pending == 0
            async with state_of(second).engine.connect() as conn:
                stored = set((await conn.execute(text("SELECT public_id FROM leads"))).scalars().all())
        assert {r.json()["lead_id"] for r in answers} <= stored
        assert list((tmp_path / "spool").glob("*.spool")) == []
    finally:
        await proxy.close()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_silent_partition_spools_after_the_timeouts(database_url: str, tmp_path: Path) -> None:
    """No reset, no refusal: the database just stops answering. Captures spool once the statement
    (DB_COMMAND_TIMEOUT_SECONDS) or connection (DB_CONNECT_TIMEOUT_SECONDS) timeout expires."""
    proxy = await _proxy(database_url)
    app = create_app(_settings(database_url, proxy, tmp_path))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                async with state_of(app).engine.begin() as conn:
                    token = (await create_token(conn, name="outage", role="admin")).token
                admin = {"Authorization": f"Bearer {token}"}
                assert (
                    await client.post("/v1/api/campaigns", headers=admin, json=CAMPAIGN)
                ).status_code == 201
                assert (await client.post("/v1/api/leads", json=_lead())).status_code == 201
                proxy.stall()
                answers = await asyncio.wait_for(_load(client, [_lead() for _ in range(12)]), 60)
                assert [r.status_code for r in answers] == [202] * 12
                await proxy.restore()
                spool = state_of(app).writer.spool
                for _ in range(600):
                    if spool.pending == 0:
                        break
                    await asyncio.sleep(0.05)
                assert spool.pending == 0
                async with state_of(app).engine.connect() as conn:
                    stored = set((await conn.execute(text("SELECT public_id FROM leads"))).scalars().all())
                assert {r.json()["lead_id"] for r in answers} <= stored
    finally:
        await proxy.close()
