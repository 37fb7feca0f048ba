"""/team, /integrations and /audit: admins only (the API's `admin` scope), retry through the jobs
service with CSRF, audit filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from leadflow.integrations.tasks import DELIVER
from leadflow.kit.clock import utcnow
from leadflow.pipeline import repository as jobs_repo
from tests.conftest import Harness
from tests.web.conftest import csrf_of
from tests.web.test_page_foundation import signed_in

ADMIN_PAGES = ("/team", "/integrations", "/audit")


async def test_admin_pages_are_for_admins_only(harness: Harness) -> None:
    for role in ("manager", "sales", "analyst"):
        async with signed_in(harness, role) as client:
            for page in ADMIN_PAGES:
                assert (await client.get(page)).status_code == 403, (role, page)
    for page in ADMIN_PAGES:
        assert (await harness.client.get(page)).status_code == 303


async def test_team_page_shows_load_hours_and_rules(harness: Harness, admin: dict[str, str]) -> None:
    member = {
        "name": "Anna Schmidt",
        "email": "anna@nexlink.website",
        "regions": ["DE", "AT"],
        "capacity": 25,
        "weight": 2,
        "working_hours": {
            "timezone": "Europe/Berlin",
            "days": [0, 1, 2, 3, 4],
            "start": "09:00",
            "end": "17:00",
        },
    }
    created = await harness.client.post("/v1/api/team-members", headers=admin, json=member)
    assert created.status_code == 201, created.text
    rule = {
        "name": "DACH",
        "position": 1,
        "conditions": {"countries": ["DE"]},
        "member_id": created.json()["id"],
    }
    assert (await harness.client.post("/v1/api/routing-rules", headers=admin, json=rule)).status_code == 201
    async with signed_in(harness, "admin") as client:
        page = await client.get("/team")
    assert page.status_code == 200
    for text in (
        "Anna Schmidt",
        "0 / 25",
        "09:00–17:00 Europe/Berlin",
        "Mon, Tue, Wed, Thu, Fri",
        "DE, AT",
        "DACH",
    ):
        assert text in page.text, text


async def _delivery_job(
    harness: Harness, connector: str, key: str, status: str = "dead", finished: datetime | None = None
) -> int:
    """A ``deliver`` job as the worker enqueues it (DELIVER.new), then ended with ``status``."""
    now = utcnow()
    row = DELIVER.new(
        {"connector": connector, "lead_id": None}, run_at=now, dedup_key=key, connector=connector
    ).row(now - timedelta(hours=1))
    row.update(status=status, attempts=8, last_error="HTTP 500" if status == "dead" else None)
    row["finished_at"] = finished
    async with harness.engine.begin() as conn:
        result = await conn.execute(insert(jobs_repo.jobs).values(**row))
        job_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        outcome = "dead" if status == "dead" else "success"
        await conn.execute(
            insert(jobs_repo.attempts).values(
                job_id=job_id, attempt=8, outcome=outcome, duration_ms=5, error=None, started_at=now
            )
        )
    return job_id


async def _dead_job(harness: Harness, connector: str, n: int) -> int:
    return await _delivery_job(harness, connector, f"deliver:{connector}:{n}")


async def test_integrations_page_and_retry(harness: Harness) -> None:
    first = await _dead_job(harness, "slack", 1)
    await _dead_job(harness, "slack", 2)
    await _dead_job(harness, "hubspot", 3)
    # Last success: the newest finished delivery of the connector, a correction delivery included.
    await _delivery_job(harness, "slack", "deliver:slack:9", "done", datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    await _delivery_job(harness, "slack", "correct:slack:9:1", "done", datetime(2026, 1, 5, 6, 7, tzinfo=UTC))
    async with signed_in(harness, "admin") as client:
        page = await client.get("/integrations")
        assert page.status_code == 200
        assert '<td data-dead="slack"><span class="badge badge-failed">2</span>' in page.text
        assert '<td data-dead="hubspot"><span class="badge badge-failed">1</span>' in page.text
        assert ">2026-01-05 06:07</time>" in page.text and "2026-01-02 03:04" not in page.text
        token = csrf_of(page.text)
        assert (await client.post(f"/integrations/jobs/{first}/retry")).status_code == 403  # no CSRF
        one = await client.post(f"/integrations/jobs/{first}/retry", data={"csrf_token": token})
        assert one.status_code == 303
        missing = await client.post("/integrations/jobs/999999/retry", data={"csrf_token": token})
        assert missing.status_code == 404 and "Job not found" in missing.text
        rest = await client.post("/integrations/jobs/retry-dead", data={"csrf_token": token})
        assert rest.status_code == 303 and rest.headers["location"] == "/integrations?retried=2"
    async with harness.engine.connect() as conn:
        statuses = (await conn.execute(select(jobs_repo.jobs.c.status))).scalars().all()
    assert sorted(statuses) == ["done", "done", "pending", "pending", "pending"]
    assert await harness.scalar("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'job.retry%'") == 2


async def test_audit_page_filters(harness: Harness, admin: dict[str, str]) -> None:
    async with signed_in(harness, "admin") as client:
        await client.get("/team")
        page = await client.get("/audit", params={"action": "auth.sign_in"})
        assert page.status_code == 200
        assert "admin@example.com" in page.text and "auth.sign_in" in page.text
        none = await client.get(
            "/audit", params={"action": "no.such", "since": "2020-01-01", "until": "2020-01-02"}
        )
        assert none.status_code == 200 and "No entries match." in none.text
