"""Campaign CRUD and analytics through HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from leadflow.kit.clock import utcnow
from leadflow.kit.state import state_of
from tests.conftest import Harness, example_lead

# Every test here runs on SQLite, and on PostgreSQL and MariaDB when the suite is told they are there.
pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)

BASE = "/v1/api/campaigns"


async def test_crud(harness: Harness, admin: dict[str, str]) -> None:
    created = await harness.client.post(
        BASE,
        headers=admin,
        json={
            "id": "spring-2026",
            "name": "  Spring <i>Promo</i> ",
            "campaign_type": "consultation",
            "budget": 500,
            "allowed_origins": ["https://Example.com/"],
            "notification_emails": ["sales@nexlink.website"],
            "generate_token": True,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "Spring Promo"
    assert body["status"] == "active"
    assert body["allowed_origins"] == ["https://example.com"]
    assert body["token"].startswith("lfc_")
    assert body["has_token"] is True

    fetched = (await harness.client.get(f"{BASE}/spring-2026", headers=admin)).json()
    assert "token" not in fetched
    assert fetched["notification_emails"] == ["sales@nexlink.website"]

    dup = await harness.client.post(
        BASE, headers=admin, json={"id": "spring-2026", "name": "x", "campaign_type": "service"}
    )
    assert dup.status_code == 409
    assert dup.json()["error"] == "CAMPAIGN_EXISTS"

    bad = await harness.client.post(
        BASE, headers=admin, json={"id": "bad id!", "name": "x", "campaign_type": "service"}
    )
    assert bad.status_code == 400
    assert bad.json()["field"] == "id"
    bad = await harness.client.post(
        BASE, headers=admin, json={"id": "x", "name": "x", "campaign_type": "webinar"}
    )
    assert bad.json()["field"] == "campaign_type"

    patched = await harness.client.patch(
        f"{BASE}/spring-2026", headers=admin, json={"status": "paused", "budget": 750}
    )
    assert patched.json()["status"] == "paused"
    assert float(patched.json()["budget"]) == 750
    null = await harness.client.patch(f"{BASE}/spring-2026", headers=admin, json={"name": None})
    assert null.status_code == 400

    listed = (await harness.client.get(BASE, headers=admin, params={"status": "paused"})).json()["items"]
    assert [c["id"] for c in listed] == ["spring-2026"]

    removed = await harness.client.delete(f"{BASE}/spring-2026/token", headers=admin)
    assert removed.json()["has_token"] is False
    assert (await harness.client.delete(f"{BASE}/spring-2026", headers=admin)).status_code == 204
    assert (await harness.client.get(f"{BASE}/spring-2026", headers=admin)).status_code == 404


async def test_campaign_with_leads_cannot_be_deleted(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    assert (await harness.client.post("/v1/api/leads", json=example_lead())).status_code == 201
    response = await harness.client.delete(f"{BASE}/{campaign['id']}", headers=admin)
    assert response.status_code == 409
    assert response.json()["error"] == "CAMPAIGN_HAS_LEADS"


async def test_analytics_from_real_data(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    # 4 leads: 3 landing-page (2 with ad-variant-a), 1 modal; one free-mail low scorer.
    specs = [
        ("a@company.com", "landing-page", "ad-variant-a"),
        ("b@company.com", "landing-page", "ad-variant-a"),
        ("c@company.com", "landing-page", "ad-variant-b"),
        ("d@gmail.com", "modal", None),
    ]
    ids = []
    for email, source, content in specs:
        body = example_lead(email=email)
        body["source"] = source
        body["tracking"]["utm_content"] = content
        if email.endswith("gmail.com"):
            body["lead_details"] = {}
            body["tracking"]["utm_source"] = None
            body["tracking"]["utm_medium"] = None
            body["tracking"]["referrer_url"] = None
            body["contact"].pop("phone")
            body["contact"].pop("company")
        response = await harness.client.post("/v1/api/leads", json=body)
        assert response.status_code == 201
        ids.append(response.json()["lead_id"])
    # Close one as won with a deal value; mark the first lost.
    url = "/v1/api/leads/{}"
    for step in ("contacted", "closed_won"):
        await harness.client.patch(url.format(ids[1]), headers=admin, json={"status": step})
    await harness.client.patch(url.format(ids[1]), headers=admin, json={"deal_value": 15000})
    await harness.client.patch(url.format(ids[0]), headers=admin, json={"status": "closed_lost"})

    analyst = await harness.token("analyst")
    today = utcnow().date()
    response = await harness.client.get(
        f"{BASE}/{campaign['id']}/analytics", headers=analyst, params={"start": str(today), "end": str(today)}
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["campaign_id"] == campaign["id"]
    assert data["period"] == {"start": str(today), "end": str(today)}
    scores = []
    for lead_id in ids:
        scores.append((await harness.client.get(url.format(lead_id), headers=admin)).json()["lead_score"])
    metrics = data["metrics"]
    assert metrics["total_leads"] == 4
    # qualified = marketing/sales qualified or customer: c (A, MQL) and b (customer); a is lost; d is grade D.
    assert metrics["qualified_leads"] == 2
    assert metrics["conversion_rate"] == 0.5
    assert metrics["average_lead_score"] == round(sum(scores) / 4, 1)
    assert metrics["cost_per_lead"] == round(1147.5 / 4, 2)
    assert metrics["revenue_generated"] == 15000
    assert data["lead_sources"] == {"landing-page": 3, "modal": 1}
    assert data["top_performing_content"] == [
        {"utm_content": "ad-variant-a", "leads": 2, "conversion_rate": 0.5},
        {"utm_content": "ad-variant-b", "leads": 1, "conversion_rate": 1.0},
    ]


async def test_analytics_empty_period_is_zeros(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    response = await harness.client.get(
        f"{BASE}/{campaign['id']}/analytics",
        headers=admin,
        params={"start": "2020-01-01", "end": "2020-01-31"},
    )
    assert response.status_code == 200
    data = response.json()
    assert data["metrics"] == {
        "total_leads": 0,
        "qualified_leads": 0,
        "conversion_rate": 0.0,
        "average_lead_score": 0.0,
        "cost_per_lead": 0.0,
        "revenue_generated": 0.0,
    }
    assert data["lead_sources"] == {}
    assert data["top_performing_content"] == []
    yesterday = utcnow().date() - timedelta(days=1)
    backwards = await harness.client.get(
        f"{BASE}/{campaign['id']}/analytics",
        headers=admin,
        params={"start": str(utcnow().date()), "end": str(yesterday)},
    )
    assert backwards.status_code == 400
    assert (await harness.client.get(f"{BASE}/nope/analytics", headers=admin)).status_code == 404
    assert (
        await harness.client.get(f"{BASE}/{campaign['id']}/analytics", headers=admin, params={"start": "x"})
    ).json()["field"] == "start"


async def test_integration_overrides(harness: Harness, admin: dict[str, str]) -> None:
    created = await harness.client.post(
        BASE,
        headers=admin,
        json={
            "id": "quiet",
            "name": "Quiet",
            "campaign_type": "service",
            "integrations": {"slack": {"enabled": False}},
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["integrations"] == {"slack": {"enabled": False}}
    patched = await harness.client.patch(
        f"{BASE}/quiet", headers=admin, json={"integrations": {"mailchimp": {"list_id": "abc"}}}
    )
    assert patched.json()["integrations"] == {"mailchimp": {"list_id": "abc"}}
    bad = await harness.client.patch(f"{BASE}/quiet", headers=admin, json={"integrations": {"myspace": {}}})
    assert bad.status_code == 400
    assert bad.json()["field"] == "integrations"


async def test_analytics_cache_serves_recent_figures_and_drops_them_on_changes(
    settings_factory: Any, admin: dict[str, str]
) -> None:
    import httpx

    from leadflow.app import create_app
    from leadflow.security.tokens import create_token

    app = create_app(settings_factory(analytics_cache_seconds=30))
    async with app.router.lifespan_context(app):
        async with state_of(app).engine.begin() as conn:
            auth = {"Authorization": f"Bearer {(await create_token(conn, name='a', role='admin')).token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.post(
                BASE,
                headers=auth,
                json={"id": "nextcloud-installation-2025", "name": "N", "campaign_type": "service"},
            )
            url = f"{BASE}/nextcloud-installation-2025/analytics"
            lead = (await client.post("/v1/api/leads", json=example_lead())).json()["lead_id"]
            first = await client.get(url, headers=auth)
            assert first.json()["metrics"]["total_leads"] == 1 and first.headers["age"] == "0"
            await client.post("/v1/api/leads", json=example_lead(email="second@company.com"))
            cached = await client.get(url, headers=auth)
            assert cached.json()["metrics"]["total_leads"] == 1  # within the cache period
            await client.patch(f"/v1/api/leads/{lead}", headers=auth, json={"status": "contacted"})
            fresh = await client.get(url, headers=auth)
            assert fresh.json()["metrics"]["total_leads"] == 2  # a change drops the campaign's entries
