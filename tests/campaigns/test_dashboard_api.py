"""GET /v1/api/analytics: every figure of the analytics page against a seeded data set with known totals."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update

from leadflow.campaigns import repository as repo
from leadflow.kit.clock import utcnow
from tests.conftest import Harness, example_lead

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)

CAMPAIGN = "nextcloud-installation-2025"
URL = "/v1/api/analytics"

# (day offset, utm_content, status, qualified, grade, minutes to first contact, rep, deal value)
SEED: list[tuple[int, str, str, bool, str, int | None, str | None, int | None]] = [
    (2, "ad-a", "closed_won", True, "A", 10, "rep1@example.com", 1000),
    (2, "ad-a", "proposal", True, "A", 30, "rep1@example.com", None),
    (2, "ad-a", "qualified", True, "B", 60, "rep1@example.com", None),
    (2, "ad-a", "contacted", False, "B", 180, "rep1@example.com", None),
    (1, "ad-a", "new", False, "B", None, None, None),
    (1, "ad-b", "closed_won", True, "C", 20, "rep2@example.com", 500),
    (1, "ad-b", "closed_lost", False, "C", None, None, None),
    (1, "ad-b", "new", False, "C", None, None, None),
    (1, "ad-b", "new", False, "C", None, None, None),
    (1, "ad-b", "new", False, "C", None, None, None),
]


async def seed(harness: Harness, campaign_id: str, rows: list[Any], tag: str) -> None:
    today = utcnow().date()
    for i, (offset, content, status, qualified, grade, minutes, rep, deal) in enumerate(rows):
        body = example_lead(email=f"{tag}{i}@company.com")
        body["campaign_id"] = campaign_id
        body["tracking"]["utm_content"] = content
        response = await harness.client.post("/v1/api/leads", json=body)
        assert response.status_code == 201, response.text
        created = datetime.combine(today - timedelta(days=offset), time(12, 0), tzinfo=UTC)
        async with harness.engine.begin() as conn:
            await conn.execute(
                update(repo.leads)
                .where(repo.leads.c.public_id == response.json()["lead_id"])
                .values(
                    created_at=created,
                    status=status,
                    qualification_status="sales_qualified" if qualified else "unqualified",
                    lead_grade=grade,
                    contacted_at=created + timedelta(minutes=minutes) if minutes is not None else None,
                    assigned_to=rep,
                    deal_value=Decimal(deal) if deal is not None else None,
                )
            )


async def _get(harness: Harness, auth: dict[str, str], path: str = "", **params: Any) -> dict[str, Any]:
    response = await harness.client.get(URL + path, headers=auth, params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_campaign_dashboard_figures(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    await seed(harness, CAMPAIGN, SEED, "dash")
    today = utcnow().date()
    analyst = await harness.token("analyst")
    start = today - timedelta(days=3)
    data = await _get(harness, analyst, f"/{CAMPAIGN}", start=str(start), end=str(today))

    assert data["campaign_id"] == CAMPAIGN
    assert data["period"] == {"start": str(start), "end": str(today)}
    assert [d["leads"] for d in data["leads_per_day"]] == [0, 4, 6, 0]
    assert data["totals"] | {} == {
        "campaign_id": CAMPAIGN,
        "name": "Nextcloud Installation 2025",
        "status": "active",
        "leads": 10,
        "qualified": 4,
        "won": 2,
        "conversion_rate": 0.4,
        "cost_per_lead": 114.75,
        "revenue": 1500.0,
        "roi": 0.3072,
    }
    assert data["grades"] == {"A": 2, "B": 3, "C": 5, "D": 0}
    assert sum(data["by_channel"].values()) == 10 and sum(data["by_source"].values()) == 10
    assert [(s["stage"], s["leads"]) for s in data["funnel"]] == [
        ("new", 10),
        ("contacted", 5),
        ("qualified", 4),
        ("proposal", 3),
        ("won", 2),
    ]
    assert data["funnel"][4]["rate"] == 0.2
    assert data["speed_to_lead"] == {
        "contacted": 5,
        "waiting": 4,
        "median_minutes": 30.0,
        "p90_minutes": 180.0,
    }
    reps = {r["rep"]: r for r in data["speed_by_rep"]}
    assert reps["rep1@example.com"] | {} == {
        "rep": "rep1@example.com",
        "contacted": 4,
        "waiting": 0,
        "median_minutes": 30.0,
        "p90_minutes": 180.0,
    }
    assert (reps["rep2@example.com"]["median_minutes"], reps["(unassigned)"]["waiting"]) == (20.0, 4)
    assert [c["campaign_id"] for c in data["speed_by_campaign"]] == [CAMPAIGN]
    assert [
        (v["utm_content"], v["leads"], v["converted"], v["conversion_rate"]) for v in data["variants"]
    ] == [
        ("ad-a", 5, 3, 0.6),
        ("ad-b", 5, 1, 0.2),
    ]
    ab = data["ab_test"]
    assert (ab["a"], ab["b"], ab["test"], ab["p_value"], ab["significant"]) == (
        "ad-a",
        "ad-b",
        "fisher_exact",
        0.5238,
        False,
    )
    assert ab["summary"].startswith("Not enough evidence yet")

    # A period without the seeded days: zeros everywhere, no test.
    empty = await _get(harness, analyst, f"/{CAMPAIGN}", start=str(today), end=str(today))
    assert empty["totals"]["leads"] == 0 and empty["ab_test"] is None
    assert empty["speed_to_lead"]["median_minutes"] is None


async def test_all_campaigns_dashboard_adds_the_campaigns_up(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    other = {"id": "other-campaign", "name": "Other", "campaign_type": "service", "budget": 100}
    assert (await harness.client.post("/v1/api/campaigns", headers=admin, json=other)).status_code == 201
    await seed(harness, CAMPAIGN, SEED, "all")
    await seed(harness, "other-campaign", [(1, "ad-c", "new", False, "D", None, None, None)] * 2, "oth")
    data = await _get(harness, admin)  # default period: the last 30 days
    today = utcnow().date()
    assert data["campaign_id"] is None
    assert data["period"] == {"start": str(today - timedelta(days=29)), "end": str(today)}
    assert len(data["leads_per_day"]) == 30
    assert data["totals"]["leads"] == 12 and data["totals"]["revenue"] == 1500.0
    assert data["totals"]["cost_per_lead"] == round(1247.5 / 12, 2)
    assert data["grades"]["D"] == 2
    by_id = {c["campaign_id"]: c for c in data["campaigns"]}
    assert by_id[CAMPAIGN]["leads"] == 10 and by_id["other-campaign"]["leads"] == 2
    assert by_id["other-campaign"]["roi"] == -1.0
    assert [v["utm_content"] for v in data["variants"]] == ["ad-a", "ad-b", "ad-c"]


async def test_dashboard_scope_period_and_errors(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    assert (await harness.client.get(URL)).status_code == 401
    sales = await harness.token("sales")
    forbidden = await harness.client.get(URL, headers=sales)
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "FORBIDDEN"  # no analytics:read
    missing = await harness.client.get(f"{URL}/no-such-campaign", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"] == "CAMPAIGN_NOT_FOUND"
    backwards = await harness.client.get(
        URL, headers=admin, params={"start": "2025-02-01", "end": "2025-01-01"}
    )
    assert backwards.status_code == 400 and backwards.json()["field"] == "end"
    too_long = await harness.client.get(
        URL, headers=admin, params={"start": "2020-01-01", "end": "2025-01-01"}
    )
    assert too_long.status_code == 400 and too_long.json()["field"] == "start"
