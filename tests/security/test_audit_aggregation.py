"""Audit of every access: status look-ups, campaign and analytics reads and refused requests are audited
in aggregate (one entry per actor, address, action and minute), and the audit log is kept within the
retention period."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.kit.clock import utcnow
from leadflow.kit.state import state_of
from leadflow.security.audit import MAX_TARGETS, Actor, AuditBuffer
from tests.conftest import Harness, example_lead
from tests.privacy.test_privacy_api import _cli

BACKENDS = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)


def _one_minute(h: Harness) -> None:
    """The app's audit buffer counts every request of the test in one minute: a test that ran across
    a minute's end would otherwise find two entries where it expects one."""
    minute = utcnow()
    state_of(h.app).audit._clock = lambda: minute


async def audit_items(h: Harness, admin: dict[str, str], action: str) -> list[dict[str, Any]]:
    await state_of(h.app).audit.flush(h.engine, everything=True)  # what the minute's end (or shutdown) does
    response = await h.client.get("/v1/api/audit", headers=admin, params={"action": action, "limit": 200})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@BACKENDS
async def test_status_lookups_are_one_entry_per_token_and_minute(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    _one_minute(harness)
    ids = []
    for email in ("a.person@company.com", "b.person@company.com"):
        created = await harness.client.post("/v1/api/leads", json=example_lead(email=email))
        ids.append(created.json()["lead_id"])
    analyst = await harness.token("analyst")
    for n in range(30):
        answer = await harness.client.get(f"/v1/api/leads/{ids[n % 2]}/status", headers=analyst)
        assert answer.status_code == 200
    [entry] = await audit_items(harness, admin, "lead.status")
    assert entry["actor"] == "token:test-analyst" and entry["role"] == "analyst"
    assert entry["details"]["aggregated"] is True
    assert entry["details"]["count"] == 30
    assert sorted(entry["details"]["target_ids"]) == sorted(ids)

    campaign_id = campaign["id"]
    for _ in range(3):
        assert (
            await harness.client.get(f"/v1/api/campaigns/{campaign_id}/analytics", headers=analyst)
        ).is_success
    assert (await harness.client.get("/v1/api/campaigns", headers=analyst)).is_success
    assert (await harness.client.get(f"/v1/api/campaigns/{campaign_id}", headers=analyst)).is_success
    [analytics] = await audit_items(harness, admin, "campaign.analytics")
    assert analytics["details"]["count"] == 3 and analytics["target_id"] == campaign_id
    assert (await audit_items(harness, admin, "campaign.list"))[0]["details"]["count"] == 1
    assert (await audit_items(harness, admin, "campaign.read"))[0]["target_id"] == campaign_id


@BACKENDS
async def test_refused_requests_are_audited_in_aggregate(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    _one_minute(harness)
    analyst = await harness.token("analyst")
    for _ in range(3):
        assert (await harness.client.get("/v1/api/leads")).status_code == 401
    bad = {"Authorization": "Bearer lf_not-a-real-token"}
    assert (await harness.client.get("/v1/api/leads", headers=bad)).status_code == 401
    for _ in range(2):
        assert (await harness.client.get("/v1/api/leads", headers=analyst)).status_code == 403
    # A capture for an unknown campaign is an error, not a refused access: not counted.
    body = example_lead()
    body["campaign_id"] = "no-such-campaign"
    assert (await harness.client.post("/v1/api/leads", json=body)).status_code == 404  # not a refusal

    [unauthorized] = await audit_items(harness, admin, "access.unauthorized")
    assert unauthorized["actor"] == "anonymous"
    assert unauthorized["details"]["count"] == 4
    assert unauthorized["details"]["target_ids"] == ["/v1/api/leads"]
    [forbidden] = await audit_items(harness, admin, "access.forbidden")
    assert forbidden["actor"] == "token:test-analyst" and forbidden["details"]["count"] == 2
    assert forbidden["details"]["error"] == "FORBIDDEN"


async def test_locked_out_sign_ins_are_audited(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(lockout_threshold=3, lockout_base_seconds=60.0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            bad = {"Authorization": "Bearer lf_guess"}
            codes = [(await client.get("/v1/api/leads", headers=bad)).status_code for _ in range(6)]
            assert codes[:3] == [401, 401, 401] and codes[-1] == 429
    # Every token from the locked address is refused now: read the log after shutdown (which flushes).
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            sql = text("SELECT action, details FROM audit_log WHERE action LIKE 'access.%'")
            rows = (await conn.execute(sql)).all()
    finally:
        await engine.dispose()
    found = {r[0]: (json.loads(r[1]) if isinstance(r[1], str) else r[1]) for r in rows}
    assert set(found) == {"access.unauthorized", "access.rate_limited"}
    assert found["access.rate_limited"]["error"] == "TOO_MANY_FAILURES"
    assert found["access.unauthorized"]["count"] + found["access.rate_limited"]["count"] == 6


async def test_buffer_writes_a_minute_once_it_has_passed(harness: Harness) -> None:
    now = [datetime(2026, 12, 2, 10, 0, 5, tzinfo=UTC)]
    buffer = AuditBuffer(clock=lambda: now[0])
    actor = Actor("token:x", "analyst", "api", "198.51.100.7")
    for n in range(MAX_TARGETS + 10):
        buffer.add(actor, "lead.status", "lead", f"lead_{n:012x}")
    buffer.add(Actor("token:y", "analyst", "api", "198.51.100.7"), "lead.status", "lead", "lead_000000000001")
    assert await buffer.flush(harness.engine) == 0  # the minute is not over
    now[0] += timedelta(seconds=50)
    buffer.add(actor, "lead.status", "lead", "lead_000000000000")
    now[0] += timedelta(seconds=10)  # 10:01:05
    buffer.add(actor, "lead.status", "lead", "lead_000000000000")  # the next minute: its own entry
    assert await buffer.flush(harness.engine) == 2
    assert buffer.pending() == 1
    rows = await harness.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'lead.status'")
    assert rows == 2
    count = await harness.scalar(
        "SELECT details FROM audit_log WHERE actor = 'token:x' AND action = 'lead.status'"
    )
    assert '"count": 61' in str(count) or "'count': 61" in str(count)
    assert await buffer.flush(harness.engine, everything=True) == 1


@BACKENDS
async def test_retention_purges_old_audit_entries_and_consent_history(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], database_url: str
) -> None:
    created = await harness.client.post("/v1/api/leads", json=example_lead(email="old@company.com"))
    assert created.status_code == 201
    withdraw = {"email": "old@company.com", "action": "withdraw"}
    assert (await harness.client.post("/v1/api/privacy/consent", headers=admin, json=withdraw)).is_success
    old = utcnow() - timedelta(days=40)
    await harness.execute("UPDATE audit_log SET created_at = :t WHERE action = 'campaign.create'", t=old)
    await harness.execute("UPDATE consent_events SET created_at = :t", t=old)
    await harness.engine.dispose()
    result = _cli(["privacy", "purge"], database_url, {"RETENTION_DAYS": "30"})
    assert result.returncode == 0, result.stderr
    assert await harness.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'campaign.create'") == 0
    assert await harness.scalar("SELECT COUNT(*) FROM consent_events") == 0
    assert (
        await harness.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'privacy.consent.withdraw'") == 1
    )


@BACKENDS
async def test_an_overlong_target_id_does_not_block_the_aggregated_audit(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    """A status look-up of a made-up, very long lead id (404) is still one audit entry, and it does not
    make the flush fail on PostgreSQL/MariaDB (target_id is VARCHAR(100)), losing every other entry."""
    analyst = await harness.token("analyst")
    long_id = "lead_" + "a" * 300
    assert (await harness.client.get(f"/v1/api/leads/{long_id}/status", headers=analyst)).status_code == 404
    assert (await harness.client.get("/v1/api/campaigns", headers=analyst)).is_success
    [entry] = await audit_items(harness, admin, "lead.status")
    assert entry["details"]["count"] == 1
    assert entry["target_id"] == long_id[:100]
    assert (await audit_items(harness, admin, "campaign.list"))[0]["details"]["count"] == 1


async def test_accesses_counted_while_a_flush_writes_are_not_lost(harness: Harness) -> None:
    """A request counted while the flush's INSERT runs (the shutdown flush takes the current minute
    too) is kept for the next flush, not dropped with the bucket just written."""
    buffer = AuditBuffer()
    actor = Actor("token:x", "analyst", "api", "198.51.100.7")
    buffer.add(actor, "lead.status", "lead", "lead_000000000001")
    during: list[int] = []

    def arrives_meanwhile(*_: Any) -> None:
        if not during:
            during.append(1)
            buffer.add(actor, "lead.status", "lead", "lead_000000000002")

    event.listen(harness.engine.sync_engine, "before_cursor_execute", arrives_meanwhile)
    try:
        assert await buffer.flush(harness.engine, everything=True) == 1
    finally:
        event.remove(harness.engine.sync_engine, "before_cursor_execute", arrives_meanwhile)
    assert during == [1]
    assert buffer.pending() == 1
    assert await buffer.flush(harness.engine, everything=True) == 1
    async with harness.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT details FROM audit_log WHERE action = 'lead.status'"))).all()
    counts = [(json.loads(r[0]) if isinstance(r[0], str) else r[0])["count"] for r in rows]
    assert counts == [1, 1]


async def test_a_failed_flush_keeps_the_counts(harness: Harness) -> None:
    buffer = AuditBuffer()
    actor = Actor("token:x", "analyst", "api", "198.51.100.7")
    for _ in range(3):
        buffer.add(actor, "lead.status", "lead", "lead_000000000001")
    await harness.execute("DROP TABLE audit_log")
    with pytest.raises(Exception, match="audit_log"):
        await buffer.flush(harness.engine, everything=True)
    assert buffer.pending() == 3
