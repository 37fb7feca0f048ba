"""Routing fixtures: clean routing tables on the shared server databases, builders for pure tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from leadflow.routing.rules import CampaignRouting, MemberState, RoutingLead, Rule
from tests.conftest import Harness, example_lead

# Monday 6 October 2025, 10:00 UTC (12:00 in Berlin, 03:00 in Los Angeles).
NOW = datetime(2025, 10, 6, 10, 0, tzinfo=UTC)
AUTO = CampaignRouting(auto_assign=True, assigned_to=None)


async def _clean_routing(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE leads SET assigned_member_id = NULL"))
            await conn.execute(text("DELETE FROM routing_rules"))
            await conn.execute(text("DELETE FROM team_members"))
    finally:
        await engine.dispose()


@pytest.fixture
async def database_url(database_url: str, backend: str) -> AsyncIterator[str]:
    """The shared PostgreSQL/MariaDB databases only truncate the core tables; empty ours too."""
    if backend != "sqlite":
        await _clean_routing(database_url)
    yield database_url
    if backend != "sqlite":
        await _clean_routing(database_url)


def member(member_id: int, **overrides: Any) -> MemberState:
    """An active, always available generalist with room for 10 open leads, plus ``overrides``."""
    values: dict[str, Any] = {
        "id": member_id,
        "name": f"Member {member_id}",
        "email": f"m{member_id}@nexlink.website",
        "phone": None,
        "active": True,
        "services": [],
        "regions": [],
        "capacity": 10,
        "open_leads": 0,
        "working_hours": None,
        "weight": 1,
        "last_assigned_at": None,
    }
    values.update(overrides)
    return MemberState(**values)


def lead(**overrides: Any) -> RoutingLead:
    values: dict[str, Any] = {
        "lead_id": 1,
        "campaign_id": "nextcloud-installation-2025",
        "service_interest": "Nextcloud Installation",
        "lead_score": 55,
        "lead_grade": "C",
        "geo_country": "DE",
        "geo_region_code": "BE",
        "urgency_level": None,
    }
    values.update(overrides)
    return RoutingLead(**values)


def rule(
    rule_id: int, member_id: int, *, position: int = 100, active: bool = True, **conditions: Any
) -> Rule:
    return Rule(
        id=rule_id,
        name=f"rule {rule_id}",
        position=position,
        active=active,
        conditions=conditions,
        member_id=member_id,
    )


async def capture_leads(harness: Harness, count: int) -> list[int]:
    """``count`` leads captured through the API (needs the ``campaign`` fixture); their row ids."""
    for i in range(count):
        response = await harness.client.post(
            "/v1/api/leads", json=example_lead(email=f"routing{i}@company.com")
        )
        assert response.status_code == 201, response.text
    async with harness.engine.connect() as conn:
        rows = await conn.execute(text("SELECT id FROM leads ORDER BY id"))
        return [int(r[0]) for r in rows]
