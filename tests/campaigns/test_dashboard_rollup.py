"""The analytics dashboard from stored slots equals a full computation over the same leads.

The reference reads every lead of the period and sums it in Python (no SQL aggregation, no stored
slots), then builds the dashboard with the same pure ``assemble``; the API must answer exactly that,
for one campaign and for all, before and after the slots are stored, and after each kind of write that
changes a figure: a status change, a contact, a win with its deal value, a reassignment, the worker's
re-grading, an erasure. Leads are spread over closed days, closed hours of today and the open hour.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update

from leadflow.campaigns import analytics, rollup
from leadflow.campaigns import repository as repo
from leadflow.campaigns.repository import LOST, QUALIFIED, WAITING
from leadflow.kit.clock import utcnow
from leadflow.leads import changes
from leadflow.leads import repository as leads_repo
from tests.conftest import Harness, example_lead

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)

CAMPAIGN = "nextcloud-installation-2025"
OTHER = "other-campaign"
DAYS = 6  # the period: the last DAYS days, today included

# (campaign, age, utm_content, status, qualified, grade, minutes to contact, rep, deal, channel)
SEED: list[tuple[str, timedelta, str | None, str, bool, str, float | None, str | None, int | None, str]] = [
    (
        CAMPAIGN,
        timedelta(days=4, hours=3),
        "ad-a",
        "closed_won",
        True,
        "A",
        12.2,
        "rep1@example.com",
        900,
        "email",
    ),
    (
        CAMPAIGN,
        timedelta(days=4, hours=1),
        "ad-a",
        "contacted",
        False,
        "B",
        95.3,
        "rep1@example.com",
        None,
        "email",
    ),
    (
        CAMPAIGN,
        timedelta(days=3, hours=5),
        "ad-b",
        "qualified",
        True,
        "B",
        300.4,
        "rep2@example.com",
        None,
        "paid_search",
    ),
    (CAMPAIGN, timedelta(days=3, hours=2), None, "new", False, "C", None, None, None, "direct"),
    (
        CAMPAIGN,
        timedelta(days=2, hours=7),
        "ad-b",
        "closed_lost",
        False,
        "D",
        None,
        None,
        None,
        "paid_search",
    ),
    (
        CAMPAIGN,
        timedelta(days=1, hours=4),
        "ad-a",
        "proposal",
        True,
        "A",
        2000.1,
        "rep2@example.com",
        None,
        "email",
    ),
    (
        CAMPAIGN,
        timedelta(hours=5, minutes=7),
        "ad-a",
        "contacted",
        False,
        "B",
        3.4,
        "rep1@example.com",
        None,
        "email",
    ),
    (CAMPAIGN, timedelta(hours=2, minutes=20), "ad-b", "new", False, "C", None, None, None, "organic"),
    (CAMPAIGN, timedelta(minutes=27), "ad-b", "contacted", True, "B", 4.6, "rep2@example.com", None, "email"),
    (CAMPAIGN, timedelta(minutes=14), "ad-a", "new", False, "C", None, None, None, "direct"),
    (CAMPAIGN, timedelta(minutes=3), "ad-a", "new", False, "A", None, None, None, "email"),
    (OTHER, timedelta(days=5, hours=2), "ad-c", "new", False, "D", None, None, None, "direct"),
    (
        OTHER,
        timedelta(days=2, hours=1),
        "ad-c",
        "closed_won",
        True,
        "B",
        44.0,
        "rep3@example.com",
        250,
        "referral",
    ),
    (
        OTHER,
        timedelta(hours=3, minutes=40),
        None,
        "contacted",
        False,
        "C",
        61.9,
        "rep3@example.com",
        None,
        "direct",
    ),
    (OTHER, timedelta(minutes=1), "ad-c", "new", False, "C", None, None, None, "direct"),
]


async def seed(harness: Harness, admin: dict[str, str]) -> list[str]:
    other = {"id": OTHER, "name": "Other", "campaign_type": "service", "budget": 100}
    assert (await harness.client.post("/v1/api/campaigns", headers=admin, json=other)).status_code == 201
    now = utcnow()
    ids = []
    for i, (campaign_id, age, content, status, qualified, grade, minutes, rep, deal, channel) in enumerate(
        SEED
    ):
        body = example_lead(email=f"slot{i}@company.com")
        body["campaign_id"] = campaign_id
        body["tracking"]["utm_content"] = content
        response = await harness.client.post("/v1/api/leads", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["lead_id"])
        created = now - age
        async with harness.engine.begin() as conn:
            await conn.execute(
                update(repo.leads)
                .where(repo.leads.c.public_id == ids[-1])
                .values(
                    created_at=created,
                    status=status,
                    qualification_status="sales_qualified" if qualified else "unqualified",
                    lead_grade=grade,
                    channel=channel,
                    contacted_at=created + timedelta(minutes=minutes) if minutes is not None else None,
                    assigned_to=rep,
                    deal_value=Decimal(deal) if deal is not None else None,
                )
            )
            await rollup.invalidate_campaign(conn, campaign_id)  # back-dated: a bulk write
    return ids


def _bucket(created: datetime, contacted: datetime | None, status: str) -> int:
    if contacted is None:
        return LOST if status == "closed_lost" else WAITING
    seconds = (contacted - created).total_seconds()
    if seconds < 7200:
        return round(seconds / 60)
    if seconds < 86400:
        return round(seconds / 900) * 15
    return round(seconds / 3600) * 60


async def reference(harness: Harness, campaign_id: str | None, start: date, end: date) -> dict[str, Any]:
    """The dashboard summed in Python from every lead row of the period."""
    first = datetime.combine(start, datetime.min.time(), UTC)
    last = datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
    where = [repo.leads.c.created_at >= first, repo.leads.c.created_at < last]
    if campaign_id is not None:
        where.append(repo.leads.c.campaign_id == campaign_id)
    async with harness.engine.connect() as conn:
        rows = (await conn.execute(select(repo.leads).where(*where))).all()
        campaigns = [await repo.get(conn, campaign_id)] if campaign_id else await repo.list_all(conn)
    sums = rollup.Sums()
    for r in rows:
        created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
        contacted = r.contacted_at
        if contacted is not None and contacted.tzinfo is None:
            contacted = contacted.replace(tzinfo=UTC)
        qualified = int(r.qualification_status in QUALIFIED)
        won = r.status == "closed_won"
        totals = repo.Totals(
            1, qualified, int(won), r.lead_score, Decimal(r.deal_value or 0) if won else Decimal(0)
        )
        sums.add_totals(r.campaign_id, created.date(), totals)
        sums.add_facet((r.campaign_id, "channel", r.channel, 0), 1, 0)
        sums.add_facet((r.campaign_id, "source", r.source, 0), 1, qualified)
        sums.add_facet((r.campaign_id, "grade", r.lead_grade, 0), 1, 0)
        sums.add_facet((r.campaign_id, "status", r.status, 0), 1, 0)
        if r.utm_content is not None:
            sums.add_facet((r.campaign_id, "content", r.utm_content, 0), 1, qualified)
        minutes = _bucket(created, contacted, r.status)
        sums.add_facet((r.campaign_id, "speed", r.assigned_to, minutes), 1, 0)
    found = [c for c in campaigns if c is not None]
    return analytics.assemble(campaign_id, found, start, end, sums).model_dump(mode="json")


async def check(harness: Harness, auth: dict[str, str], what: str) -> None:
    today = utcnow().date()
    start = today - timedelta(days=DAYS - 1)
    for scope in (None, CAMPAIGN, OTHER):
        path = "/v1/api/analytics" + (f"/{scope}" if scope else "")
        response = await harness.client.get(path, headers=auth, params={"start": str(start)})
        assert response.status_code == 200, response.text
        assert response.json() == await reference(harness, scope, start, today), f"{what}, {scope or 'all'}"


async def stored_slots(harness: Harness) -> int:
    async with harness.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(repo.days_t))).scalar() or 0)


async def test_dashboard_from_stored_slots_equals_a_full_scan(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    ids = await seed(harness, admin)
    await check(harness, admin, "cold")
    assert await stored_slots(harness) > 0  # the closed days and hours were stored
    await check(harness, admin, "stored")

    # A salesperson works old leads: contact, win with a deal value, reassign.
    assert (
        await harness.client.patch(f"/v1/api/leads/{ids[3]}", headers=admin, json={"status": "contacted"})
    ).status_code == 200
    await check(harness, admin, "contacted")
    for body in ({"status": "closed_won"}, {"deal_value": 1234.5}):
        assert (
            await harness.client.patch(f"/v1/api/leads/{ids[1]}", headers=admin, json=body)
        ).status_code == 200
    await check(harness, admin, "won")
    for lead in (ids[2], ids[6], ids[8], ids[12]):
        response = await harness.client.patch(
            f"/v1/api/leads/{lead}", headers=admin, json={"assigned_to": "rep9@example.com"}
        )
        assert response.status_code == 200, response.text
    await check(harness, admin, "reassigned")

    # The worker re-grades and re-classifies a lead (routing and enrichment write through changes.apply).
    async with harness.engine.begin() as conn:
        row = await leads_repo.lock_for_update(conn, ids[4])
        assert row is not None
        await changes.apply(
            conn, [changes.Write(row, {"lead_grade": "A", "channel": "email", "lead_score": 99})]
        )
    await check(harness, admin, "re-graded")

    # Erasure deletes the person's leads.
    for email in ("slot0@company.com", "slot10@company.com", "slot7@company.com"):
        erased = await harness.client.post(
            "/v1/api/privacy/erase", headers=admin, json={"email": email, "reason": "request"}
        )
        assert erased.status_code == 200, erased.text
    await check(harness, admin, "erased")

    # The periodic job's computation stores whatever is missing; the answer stays the same.
    async with harness.engine.connect() as conn:
        versions, computed = await rollup.materialise(conn, [CAMPAIGN, OTHER])
        await conn.commit()
    async with harness.engine.begin() as conn:
        await rollup.store(conn, versions, computed)
    await check(harness, admin, "after the job")


async def test_per_campaign_analytics_from_stored_slots_equals_a_full_scan(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    await seed(harness, admin)
    today = utcnow().date()
    start = today - timedelta(days=DAYS - 1)
    for attempt in ("cold", "stored"):
        response = await harness.client.get(
            f"/v1/api/campaigns/{CAMPAIGN}/analytics", headers=admin, params={"start": str(start)}
        )
        assert response.status_code == 200, response.text
        data = response.json()
        expected = await reference(harness, CAMPAIGN, start, today)
        metrics = data["metrics"]
        assert (metrics["total_leads"], metrics["qualified_leads"]) == (
            expected["totals"]["leads"],
            expected["totals"]["qualified"],
        ), attempt
        assert metrics["revenue_generated"] == expected["totals"]["revenue"], attempt
        assert data["lead_sources"] == expected["by_source"], attempt
        assert {c["utm_content"]: c["leads"] for c in data["top_performing_content"]} == {
            v["utm_content"]: v["leads"] for v in expected["variants"]
        }, attempt
