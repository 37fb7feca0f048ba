"""``service.assign`` against a real database: load from leads, rules from the table, row locks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from leadflow.config import Settings
from leadflow.routing import repository as repo
from leadflow.routing import service
from leadflow.routing.rules import CampaignRouting, Decision
from leadflow.routing.schemas import MemberCreate, RuleCreate
from tests.conftest import Harness
from tests.routing.conftest import AUTO, NOW, capture_leads, lead

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)


async def add_members(harness: Harness, *specs: dict[str, Any]) -> list[int]:
    ids = []
    async with harness.engine.begin() as conn:
        for spec in specs:
            created = await service.create_member(conn, MemberCreate.model_validate(spec))
            ids.append(created.id)
    return ids


async def assign(
    harness: Harness,
    lead_id: int,
    campaign: CampaignRouting = AUTO,
    settings: Settings | None = None,
    **facts: Any,
) -> Decision:
    async with harness.engine.begin() as conn:
        return await service.assign(
            conn, lead(lead_id=lead_id, **facts), campaign, settings or harness.settings, NOW
        )


async def last_assigned(harness: Harness) -> dict[int, Any]:
    async with harness.engine.connect() as conn:
        return {int(r.id): r.last_assigned_at for r in await repo.list_members(conn)}


async def test_assign_decides_and_only_touches_last_assigned_at(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    anna, bob = await add_members(
        harness,
        {"name": "Anna", "email": "anna@nexlink.website"},
        {"name": "Bob", "email": "bob@nexlink.website"},
    )
    (lead_id,) = await capture_leads(harness, 1)
    activities = await harness.scalar("SELECT count(*) FROM lead_activities")

    decision = await assign(harness, lead_id)
    assert decision == Decision(
        anna,
        "anna@nexlink.website",
        "Weighted round-robin among 2 eligible members chose Anna <anna@nexlink.website> "
        "(0 of 50 open leads, weight 1).",
        "round_robin",
    )
    assert await last_assigned(harness) == {anna: NOW, bob: None}
    # The lead row and its activities are the worker's to write.
    assert await harness.scalar("SELECT assigned_member_id FROM leads WHERE id = :id", id=lead_id) is None
    assert await harness.scalar("SELECT assigned_to FROM leads WHERE id = :id", id=lead_id) is None
    assert await harness.scalar("SELECT count(*) FROM lead_activities") == activities

    # Loads are equal (the lead was not written), so the tie goes to whoever waited longest: Bob.
    assert (await assign(harness, lead_id)).member_id == bob


async def test_open_leads_come_from_the_leads_table(harness: Harness, campaign: dict[str, Any]) -> None:
    anna, bob = await add_members(
        harness,
        {"name": "Anna", "email": "anna@nexlink.website", "capacity": 2},
        {"name": "Bob", "email": "bob@nexlink.website", "capacity": 5, "weight": 1},
    )
    lead_ids = await capture_leads(harness, 5)
    for lead_id, status in zip(lead_ids, ("new", "contacted", "closed_won", "closed_lost"), strict=False):
        await harness.execute(
            "UPDATE leads SET assigned_member_id = :m, status = :s WHERE id = :id",
            m=anna,
            s=status,
            id=lead_id,
        )
    new_lead = lead_ids[4]
    decision = await assign(harness, new_lead)
    assert decision.member_id == bob  # Anna has 2 open leads (closed ones do not count): full

    await harness.execute("UPDATE team_members SET active = :f WHERE id = :id", f=False, id=bob)
    decision = await assign(harness, new_lead)
    assert decision == Decision(
        None,
        None,
        "The lead stays unassigned: none of 1 team member is eligible (1 at capacity) and no fallback owner "
        "is set.",
        "unassigned",
    )
    # Re-routing one of Anna's own open leads does not count it against her.
    rerouted = await assign(harness, lead_ids[0])
    assert (rerouted.member_id, rerouted.reason) == (
        anna,
        "Weighted round-robin among 1 eligible member chose Anna <anna@nexlink.website> "
        "(1 of 2 open leads, weight 1).",
    )

    await harness.execute("UPDATE leads SET status = 'closed_lost' WHERE id = :id", id=lead_ids[1])
    assert (await assign(harness, new_lead)).member_id == anna


async def test_rules_campaign_and_fallback_from_the_database(
    harness: Harness, campaign: dict[str, Any], settings_factory: Callable[..., Settings]
) -> None:
    anna, bob, cleo = await add_members(
        harness,
        {"name": "Anna", "email": "anna@nexlink.website"},
        {"name": "Bob", "email": "bob@nexlink.website", "services": ["Cloud Migration"]},
        {"name": "Cleo", "email": "cleo@nexlink.website", "active": False},
    )
    (lead_id,) = await capture_leads(harness, 1)
    async with harness.engine.begin() as conn:
        await service.create_rule(conn, RuleCreate(name="Inactive member", position=1, member_id=cleo))
        await service.create_rule(
            conn,
            RuleCreate.model_validate(
                {
                    "name": "Hot DE",
                    "position": 5,
                    "member_id": bob,
                    "conditions": {"grades": ["A"], "countries": ["DE"]},
                }
            ),
        )
        await service.create_rule(conn, RuleCreate(name="Disabled", position=0, member_id=anna, active=False))

    hot = await assign(harness, lead_id, lead_grade="A", lead_score=90)
    assert hot == Decision(
        bob,
        "bob@nexlink.website",
        "Rule 'Inactive member' matched but its member is not an active team member. "
        "Routing rule 'Hot DE' matched; assigned to Bob <bob@nexlink.website> (0 of 50 open leads).",
        "rule:Hot DE",
    )
    cold = await assign(harness, lead_id, lead_grade="C")
    assert (cold.member_id, cold.rule) == (anna, "round_robin")  # Bob does not take Nextcloud leads

    fixed = await assign(
        harness, lead_id, CampaignRouting(auto_assign=False, assigned_to="Bob@nexlink.website")
    )
    assert (fixed.member_id, fixed.assignee, fixed.rule) == (bob, "bob@nexlink.website", "campaign_fixed")
    inactive = await assign(
        harness, lead_id, CampaignRouting(auto_assign=False, assigned_to="cleo@nexlink.website")
    )
    assert (inactive.member_id, inactive.assignee, inactive.rule) == (
        None,
        "cleo@nexlink.website",
        "campaign_fixed",
    )

    await harness.execute("UPDATE team_members SET capacity = 0")
    with_owner = settings_factory(fallback_owner="owner@nexlink.website")
    fallback = await assign(harness, lead_id, settings=with_owner)
    assert fallback == Decision(
        None,
        "owner@nexlink.website",
        "Rule 'Inactive member' matched but its member is not an active team member. Assigned to the fallback "
        "owner owner@nexlink.website: none of 2 team members is eligible (2 at capacity).",
        "fallback",
    )
    assert await last_assigned(harness) == {anna: NOW, bob: NOW, cleo: None}


async def test_assign_many_decides_in_order_as_one_after_another(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    anna, bob = await add_members(
        harness,
        {"name": "Anna", "email": "anna@nexlink.website", "capacity": 2},
        {"name": "Bob", "email": "bob@nexlink.website", "capacity": 1},
    )
    lead_ids = await capture_leads(harness, 4)
    async with harness.engine.begin() as conn:
        decisions = await service.assign_many(
            conn, [(lead(lead_id=i), AUTO) for i in lead_ids], harness.settings, NOW
        )
    # Each decision counts the ones before it: capacities (2 and 1) are never exceeded in a batch.
    assert [d.member_id for d in decisions] == [anna, bob, anna, None]
    assert decisions[3].rule == "unassigned"
    touched = await last_assigned(harness)
    assert touched[anna] > touched[bob]  # the last assignment in the batch is the latest


async def test_menu_counts_of_open_leads_stop_at_the_cap(harness: Harness, campaign: dict[str, Any]) -> None:
    anna, bob = await add_members(
        harness,
        {"name": "Anna", "email": "anna@nexlink.website"},
        {"name": "Bob", "email": "bob@nexlink.website"},
    )
    lead_ids = await capture_leads(harness, 5)
    for lead_id, status in zip(lead_ids, ("new", "contacted", "qualified", "closed_won"), strict=False):
        await harness.execute(
            "UPDATE leads SET assigned_member_id = :m, status = :s WHERE id = :id",
            m=anna,
            s=status,
            id=lead_id,
        )
    async with harness.engine.connect() as conn:
        assert await repo.open_lead_counts_upto(conn, [anna, bob], 10) == {anna: 3, bob: 0}
        assert await repo.open_lead_counts_upto(conn, [anna, bob], 1) == {anna: 2, bob: 0}  # cap + 1: "1+"
        assert await repo.open_lead_counts(conn) == {anna: 3}  # the exact count routing uses agrees
        assert [(m.id, m.open_leads) for m in await service.members_with_load(conn)] == [(anna, 3), (bob, 0)]
