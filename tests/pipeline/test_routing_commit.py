"""``lead.process`` stages its routing; ``commit_routing`` applies it inside the worker's commit."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from leadflow.leads import repository as leads_repo
from leadflow.leads.tasks import ROUTE_GROUP, RoutePlan, commit_routing, process_lead
from leadflow.pipeline.runtime import worker_context
from tests.conftest import Harness, example_lead

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)


class Rollback(Exception):
    pass


async def _plan(harness: Harness, admin: dict[str, str], ctx: Any) -> RoutePlan:
    member = await harness.client.post(
        "/v1/api/team-members",
        headers=admin,
        json={"name": "Alice Seller", "email": "alice@nexlink.website", "capacity": 10},
    )
    assert member.status_code == 201, member.text
    captured = await harness.client.post("/v1/api/leads", json=example_lead())
    assert captured.status_code == 201
    lead_id = await harness.scalar("SELECT id FROM leads")
    result = await process_lead(SimpleNamespace(payload={"lead_id": lead_id}), ctx)
    assert result.staged is not None and result.staged.group == ROUTE_GROUP
    plan = result.staged.item
    assert isinstance(plan, RoutePlan)
    return plan


async def test_a_rolled_back_commit_leaves_the_plan_as_it_was(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    async with worker_context(harness.engine, harness.settings) as ctx:
        plan = await _plan(harness, admin, ctx)
        values, activities = dict(plan.values), list(plan.activities)
        # A batch whose transaction failed is committed again job by job, with the same plans.
        with pytest.raises(Rollback):
            async with harness.engine.begin() as conn:
                await commit_routing(conn, [plan], ctx)
                raise Rollback
        assert plan.values == values and plan.activities == activities
        async with harness.engine.begin() as conn:
            await commit_routing(conn, [plan], ctx)

    async with harness.engine.connect() as conn:
        lead = (await conn.execute(select(leads_repo.leads))).one()
        kinds = [a.activity_type for a in await leads_repo.activities_for(conn, lead.id)]
    assert lead.assigned_to == "alice@nexlink.website"
    assert kinds.count("assigned") == 1 and kinds.count("enriched") == 1


async def test_a_salespersons_qualification_is_not_undone_by_the_rescore(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    async with worker_context(harness.engine, harness.settings) as ctx:
        plan = await _plan(harness, admin, ctx)
        # Enrichment read the lead as unqualified; meanwhile a salesperson qualified it.
        plan.values["qualification_status"] = "unqualified"
        await harness.execute("UPDATE leads SET qualification_status = 'sales_qualified'")
        async with harness.engine.begin() as conn:
            await commit_routing(conn, [plan], ctx)
    assert await harness.scalar("SELECT qualification_status FROM leads") == "sales_qualified"
