"""Stored daily analytics sums: closed days are computed once, and every change to them drops them."""

from __future__ import annotations

import asyncio
import time as clock
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from leadflow.app import create_app
from leadflow.campaigns import repository as repo
from leadflow.campaigns import rollup
from leadflow.config import Settings
from leadflow.kit.clock import utcnow
from leadflow.kit.state import state_of
from leadflow.security.tokens import create_token
from tests.conftest import Harness, example_lead

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)

BASE = "/v1/api/campaigns"


async def capture(harness: Harness, n: int, tag: str, **tracking: Any) -> list[str]:
    ids = []
    for i in range(n):
        body = example_lead(email=f"{tag}{i}@company.com")
        body["tracking"].update(tracking)
        response = await harness.client.post("/v1/api/leads", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["lead_id"])
    return ids


async def back_date(harness: Harness, public_ids: list[str], day: date) -> None:
    when = datetime.combine(day, time(12, 0), tzinfo=UTC)
    async with harness.engine.begin() as conn:
        await conn.execute(
            update(repo.leads).where(repo.leads.c.public_id.in_(public_ids)).values(created_at=when)
        )
        # Back-dating is a write into closed days, like the demo seeding: it must drop stored sums.
        await rollup.invalidate_campaign(conn, "nextcloud-installation-2025")


async def stored_days(harness: Harness) -> list[date]:
    """The whole days stored (hours of open days left out)."""
    async with harness.engine.connect() as conn:
        query = select(repo.days_t.c.day).where(repo.days_t.c.part == repo.WHOLE_DAY)
        rows = await conn.execute(query.order_by(repo.days_t.c.day))
        return [repo.as_date(r[0]) for r in rows]


async def stored_rows(harness: Harness, facet: str) -> int:
    """Facet entries of the stored whole days."""
    async with harness.engine.connect() as conn:
        query = select(repo.days_t.c.facets).where(repo.days_t.c.part == repo.WHOLE_DAY)
        return sum(1 for (facets,) in await conn.execute(query) for name in facets[0] if name == facet)


async def analytics(harness: Harness, auth: dict[str, str], start: date, end: date) -> dict[str, Any]:
    response = await harness.client.get(
        f"{BASE}/nextcloud-installation-2025/analytics",
        headers=auth,
        params={"start": str(start), "end": str(end)},
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


@pytest.fixture
def today() -> date:
    return utcnow().date()


async def test_closed_days_are_stored_once_and_added_to_live_days(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], today: date
) -> None:
    old = await capture(harness, 3, "old", utm_content="ad-a")
    older = await capture(harness, 2, "older", utm_content="ad-b")
    await capture(harness, 1, "now", utm_content="ad-a")
    await back_date(harness, old, today - timedelta(days=5))
    await back_date(harness, older, today - timedelta(days=9))
    start = today - timedelta(days=10)

    first = await analytics(harness, admin, start, today)
    assert first["metrics"]["total_leads"] == 6
    assert first["top_performing_content"][0] == {"utm_content": "ad-a", "leads": 4, "conversion_rate": 1.0}
    # Every closed day from the first lead on is stored (empty ones too); today never is.
    first_lead, closed = today - timedelta(days=9), rollup.last_closed_day(utcnow())
    expected = [first_lead + timedelta(days=i) for i in range((closed - first_lead).days + 1)]
    assert await stored_days(harness) == expected
    assert await stored_rows(harness, "content") == 2  # one content on each of the two days with leads

    again = await analytics(harness, admin, start, today)
    assert again["metrics"] == first["metrics"] and again["lead_sources"] == first["lead_sources"]
    wider = await analytics(harness, admin, start - timedelta(days=30), today - timedelta(days=2))
    assert wider["metrics"]["total_leads"] == 5  # all from stored days: nothing new to compute
    assert await stored_days(harness) == expected
    assert (await analytics(harness, admin, start, start))["metrics"]["total_leads"] == 0


async def test_a_change_to_an_old_lead_drops_its_day(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], today: date
) -> None:
    old = await capture(harness, 2, "old")
    day = today - timedelta(days=4)
    await back_date(harness, old, day)
    start = today - timedelta(days=6)
    before = await analytics(harness, admin, start, today)
    assert before["metrics"]["revenue_generated"] == 0 and day in await stored_days(harness)

    url = f"/v1/api/leads/{old[0]}"
    for step in ("contacted", "closed_won"):
        assert (await harness.client.patch(url, headers=admin, json={"status": step})).status_code == 200
    await harness.client.patch(url, headers=admin, json={"deal_value": 4200})
    assert day not in await stored_days(harness)  # the write dropped its day

    after = await analytics(harness, admin, start, today)
    assert after["metrics"]["revenue_generated"] == 4200
    assert after["metrics"]["total_leads"] == 2


async def test_erasing_a_person_drops_the_days_of_their_leads(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], today: date
) -> None:
    old = await capture(harness, 2, "gone")
    await back_date(harness, old, today - timedelta(days=3))
    start = today - timedelta(days=5)
    assert (await analytics(harness, admin, start, today))["metrics"]["total_leads"] == 2
    erased = await harness.client.post(
        "/v1/api/privacy/erase", headers=admin, json={"email": "gone0@company.com", "reason": "request"}
    )
    assert erased.status_code == 200, erased.text
    assert (await analytics(harness, admin, start, today))["metrics"]["total_leads"] == 1


async def test_sums_computed_before_an_invalidation_are_not_kept(
    harness: Harness, campaign: dict[str, Any], today: date
) -> None:
    old = await capture(harness, 1, "race")
    day = today - timedelta(days=3)
    await back_date(harness, old, day)
    async with harness.engine.connect() as conn:
        versions, computed = await rollup.materialise(conn, [campaign["id"]], days=5)
        await conn.commit()
    assert computed[campaign["id"]][(day, repo.WHOLE_DAY)].totals.leads == 1
    async with harness.engine.begin() as conn:  # a write lands while the request was computing
        await rollup.invalidate(conn, {campaign["id"]: [day]})
    async with harness.engine.begin() as conn:
        assert await rollup.store(conn, versions, computed) == 0
    assert await stored_days(harness) == []
    async with harness.engine.connect() as conn:  # computed again after the write: kept
        versions, computed = await rollup.materialise(conn, [campaign["id"]], days=5)
        await conn.commit()
    async with harness.engine.begin() as conn:
        assert await rollup.store(conn, versions, computed) > 0
        assert await rollup.store(conn, versions, computed) == 0  # stored already: left as it is
    assert day in await stored_days(harness)


async def test_the_rollup_job_stores_missing_closed_days(settings_factory: Callable[..., Settings]) -> None:
    """The worker's periodic analytics.rollup job stores the closed days a request would otherwise
    compute; after it, nothing is missing."""
    settings = settings_factory(run_worker=True, worker_poll_seconds=0.05)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        engine = state_of(app).engine
        async with engine.begin() as conn:
            auth = {"Authorization": f"Bearer {(await create_token(conn, name='r', role='admin')).token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            body = {"id": "nextcloud-installation-2025", "name": "N", "campaign_type": "service"}
            assert (await client.post("/v1/api/campaigns", headers=auth, json=body)).status_code == 201
            created = await client.post("/v1/api/leads", json=example_lead(email="job0@company.com"))
            assert created.status_code == 201
            day = utcnow().date() - timedelta(days=3)
            async with engine.begin() as conn:
                await conn.execute(
                    update(repo.leads)
                    .where(repo.leads.c.public_id == created.json()["lead_id"])
                    .values(created_at=datetime.combine(day, time(9, 0), tzinfo=UTC))
                )
                await rollup.invalidate_campaign(conn, "nextcloud-installation-2025")

            async def excerpts() -> list[str]:
                jobs = (
                    await client.get("/v1/api/jobs", headers=auth, params={"kind": "analytics.rollup"})
                ).json()
                found: list[str] = []
                for job in jobs["items"]:
                    detail = (await client.get(f"/v1/api/jobs/{job['id']}", headers=auth)).json()
                    found += [a["response_excerpt"] or "" for a in detail["history"]]
                return found

            # The run seeded at start-up may have found nothing yet: make the pending run due until one
            # has computed the back-dated day.
            deadline = clock.monotonic() + 30
            while True:
                done = await excerpts()
                if any(e.endswith("slots of 1 campaigns computed") for e in done):
                    break
                assert clock.monotonic() < deadline, done
                async with engine.begin() as conn:
                    await conn.execute(
                        text(
                            "UPDATE jobs SET run_at = :now WHERE kind = 'analytics.rollup' AND status = 'pending'"
                        ),
                        {"now": utcnow() - timedelta(seconds=1)},
                    )
                state_of(app).wake_worker()
                await asyncio.sleep(0.2)
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(repo.days_t.c.day, repo.days_t.c.leads).where(repo.days_t.c.part == repo.WHOLE_DAY)
                )
                stored = {repo.as_date(r.day): int(r.leads) for r in rows}
            assert stored[day] == 1 and stored[day + timedelta(days=1)] == 0  # from the first lead on
            assert day - timedelta(days=1) not in stored  # before the campaign's first lead: nothing
            async with engine.connect() as conn:
                _, computed = await rollup.materialise(conn, ["nextcloud-installation-2025"])
            assert not [s for slots in computed.values() for s in slots if s[1] == repo.WHOLE_DAY]
