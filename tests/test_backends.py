"""The same migrations on SQLite, PostgreSQL and MariaDB; the spec's look-ups use indexes."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from leadflow.config import normalise_database_url
from leadflow.migrations.runner import downgrade_async, upgrade_async
from tests.conftest import TABLES, Harness, _admin, _server_url, example_lead

SPEC_LEAD_COLUMNS = {
    "id", "uuid", "first_name", "last_name", "email", "phone", "company", "campaign_id", "campaign_name",
    "source", "medium", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
    "service_interest", "urgency", "message", "budget_range", "timeline", "visitor_id", "session_id",
    "ip_address", "user_agent", "referrer_url", "landing_page_url", "lead_score", "lead_grade",
    "qualification_status", "status", "assigned_to", "follow_up_date", "created_at", "updated_at", "contacted_at",
}  # fmt: skip
SPEC_CAMPAIGN_COLUMNS = {
    "id", "name", "description", "campaign_type", "status", "start_date", "end_date", "budget", "target_leads",
    "landing_page_url", "auto_assign", "assigned_to", "notification_emails", "created_at", "updated_at",
}  # fmt: skip
SPEC_ACTIVITY_COLUMNS = {
    "id",
    "lead_id",
    "activity_type",
    "description",
    "performed_by",
    "metadata",
    "created_at",
}
JOB_COLUMNS = {"kind", "payload", "status", "attempts", "run_at", "locked_until", "last_error"}


async def _fresh(backend: str, tmp_path: Path) -> tuple[str, str | None]:
    """A brand-new empty database: (async url, admin url to drop it with)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/fresh.db", None
    env = {"postgres": "LEADFLOW_TEST_POSTGRES_URL", "mysql": "LEADFLOW_TEST_MYSQL_URL"}[backend]
    base = normalise_database_url(_server_url(env) or "")
    name = f"leadflow_m_{uuid.uuid4().hex[:8]}"
    await _admin(base, f"CREATE DATABASE {name}")
    return make_url(base).set(database=name).render_as_string(hide_password=False), base


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
async def test_migrations_up_down_up_with_every_spec_column(kind: str, tmp_path: Path) -> None:
    url, admin_url = await _fresh(kind, tmp_path)
    name = make_url(url).database
    try:
        await upgrade_async(url)
        await downgrade_async(url, "base")
        await upgrade_async(url)
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:

                def columns(sync_conn: Any) -> dict[str, set[str]]:
                    insp = inspect(sync_conn)
                    return {t: {c["name"] for c in insp.get_columns(t)} for t in (*TABLES, "alembic_version")}

                found = await conn.run_sync(columns)
                index_names = await conn.run_sync(
                    lambda c: {i["name"] for i in inspect(c).get_indexes("leads")}
                )
        finally:
            await engine.dispose()
        assert found["leads"] >= SPEC_LEAD_COLUMNS
        assert found["campaigns"] >= SPEC_CAMPAIGN_COLUMNS
        assert found["lead_activities"] >= SPEC_ACTIVITY_COLUMNS
        assert found["jobs"] >= JOB_COLUMNS
        assert {"idx_campaign", "idx_email", "idx_status", "idx_lead_score", "idx_created"} <= index_names
    finally:
        if admin_url is not None:
            await _admin(admin_url, f"DROP DATABASE {name}")


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_plans_use_indexes_for_dedup_and_status(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    for i in range(30):
        assert (
            await harness.client.post("/v1/api/leads", json=example_lead(email=f"x{i}@company.com"))
        ).status_code == 201
    async with harness.engine.begin() as conn:
        await conn.execute(text("ANALYZE leads"))
        # Small tables may be scanned sequentially; ask the planner what it does when it must pick an index.
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        dedup = "\n".join(
            r[0]
            for r in await conn.execute(
                text(
                    "EXPLAIN SELECT id, public_id, campaign_id, email_hash, created_at FROM leads "
                    "WHERE email_hash IN ('abc', 'def') ORDER BY created_at DESC"
                )
            )
        )
        status = "\n".join(
            r[0]
            for r in await conn.execute(
                text("EXPLAIN SELECT status, updated_at FROM leads WHERE public_id = 'lead_0123456789ab'")
            )
        )
        by_status = "\n".join(
            r[0]
            for r in await conn.execute(
                text(
                    "EXPLAIN SELECT id FROM leads WHERE status = 'new' AND created_at > now() - interval '1 day'"
                )
            )
        )
        analytics = "\n".join(
            r[0]
            for r in await conn.execute(
                text(
                    "EXPLAIN SELECT count(*) FROM leads WHERE campaign_id = 'x' "
                    "AND created_at >= now() - interval '30 days'"
                )
            )
        )
    assert "idx_email" in dedup, dedup
    assert "uq_leads_public_id" in status, status
    assert "Index" in by_status and "Seq Scan" not in by_status, by_status
    assert "Index" in analytics and "Seq Scan" not in analytics, analytics


def test_ci_runs_the_server_suites() -> None:
    """In CI the PostgreSQL and MariaDB suites must run, not skip."""
    if not os.environ.get("CI"):
        pytest.skip("only meaningful in CI")
    assert os.environ.get("LEADFLOW_TEST_POSTGRES_URL")
    assert os.environ.get("LEADFLOW_TEST_MYSQL_URL")
