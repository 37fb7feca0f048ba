"""Concurrent assignments on PostgreSQL and MariaDB: the member row locks keep capacity exact."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from leadflow.routing import service
from leadflow.routing.rules import Decision
from tests.conftest import Harness
from tests.routing.conftest import AUTO, NOW, capture_leads, lead
from tests.routing.test_assign import add_members


@pytest.mark.parametrize("backend", ["postgres", "mysql"], indirect=True)
async def test_concurrent_assignments_never_exceed_capacity(
    harness: Harness, campaign: dict[str, Any], backend: str
) -> None:
    """Many workers route at once, each in its own transaction, the way the worker does it: read the
    lead, assign, (slowly) write the lead, commit. The member row locks make them queue, so every
    member ends with exactly their capacity and the rest stay unassigned."""
    capacities = {"anna@nexlink.website": 2, "bob@nexlink.website": 1, "cleo@nexlink.website": 3}
    ids = await add_members(
        harness, *({"name": e.split("@")[0], "email": e, "capacity": c} for e, c in capacities.items())
    )
    lead_ids = await capture_leads(harness, 14)
    go = asyncio.Event()

    async def route(lead_id: int, offset: int) -> Decision:
        async with harness.engine.connect() as conn:
            await go.wait()
            async with conn.begin():
                # A plain read first: on MySQL this pins the REPEATABLE READ snapshot before the locks.
                await conn.execute(text("SELECT status FROM leads WHERE id = :id"), {"id": lead_id})
                decision = await service.assign(
                    conn, lead(lead_id=lead_id), AUTO, harness.settings, NOW + timedelta(seconds=offset)
                )
                await asyncio.sleep(0.03)  # widen the window in which an unlocked read would go stale
                await conn.execute(
                    text("UPDATE leads SET assigned_member_id = :m, assigned_to = :a WHERE id = :id"),
                    {"m": decision.member_id, "a": decision.assignee, "id": lead_id},
                )
            return decision

    tasks = [asyncio.create_task(route(lead_id, i)) for i, lead_id in enumerate(lead_ids)]
    await asyncio.sleep(0.05)
    go.set()
    decisions = await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)

    assert Counter(d.rule for d in decisions) == {"round_robin": 6, "unassigned": 8}
    assert Counter(d.member_id for d in decisions if d.member_id) == dict(
        zip(ids, capacities.values(), strict=True)
    )
    async with harness.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT assigned_member_id, count(*) FROM leads WHERE assigned_member_id IS NOT NULL "
                "GROUP BY assigned_member_id"
            )
        )
        in_db = {int(r[0]): int(r[1]) for r in rows}
    assert in_db == dict(zip(ids, capacities.values(), strict=True))
