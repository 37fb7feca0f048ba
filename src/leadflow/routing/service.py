"""Routing rules of the house: team member and rule management, and assigning a lead."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.config import Settings
from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow
from leadflow.routing import repository as repo
from leadflow.routing.repository import MemberRow, RuleRow
from leadflow.routing.rules import CampaignRouting, Decision, MemberState, RoutingLead, Rule, decide
from leadflow.routing.schemas import (
    MemberCreate,
    MemberList,
    MemberOut,
    MemberUpdate,
    RuleCreate,
    RuleList,
    RuleOut,
    RuleUpdate,
)

# --- assignment -------------------------------------------------------------------------------------


def to_state(row: MemberRow, open_leads: int) -> MemberState:
    return MemberState(
        id=int(row.id),
        name=row.name,
        email=row.email,
        phone=row.phone,
        active=bool(row.active),
        services=list(row.services or []),
        regions=list(row.regions or []),
        capacity=int(row.capacity),
        open_leads=open_leads,
        working_hours=row.working_hours,
        weight=int(row.weight),
        last_assigned_at=row.last_assigned_at,
    )


def to_rule(row: RuleRow) -> Rule:
    return Rule(
        id=int(row.id),
        name=row.name,
        position=int(row.position),
        active=bool(row.active),
        conditions=dict(row.conditions or {}),
        member_id=int(row.member_id),
    )


async def assign(
    conn: AsyncConnection,
    lead: RoutingLead,
    campaign: CampaignRouting,
    settings: Settings,
    now: datetime,
) -> Decision:
    """Decide who gets ``lead`` and record the member's ``last_assigned_at``; the caller commits.

    Runs inside the caller's transaction (the worker's job context) and must be followed, in that same
    transaction, by the caller's own writes:

    * it does **not** update the lead row (``assigned_to``, ``assigned_member_id``) and writes **no**
      activity - the worker does both before committing;
    * on PostgreSQL and MySQL it locks the active ``team_members`` rows (``SELECT ... FOR UPDATE``,
      ordered by id), so concurrent assignments run one after another until each commits and a member's
      capacity is never exceeded. The lock is held until the caller commits or rolls back, so keep the
      rest of the transaction short (no network calls: enqueue notifications as outbox jobs instead).
      On MySQL, running the transaction at READ COMMITTED avoids gap locks from the load count.

    Open leads are the member's leads whose status is not closed_won/closed_lost, not counting
    ``lead`` itself (so re-routing a lead does not count it against its current owner).
    Only active members are loaded, so a campaign's fixed assignee who is an inactive member still gets
    the lead (``assignee``) but without a ``member_id``. ``now`` must be timezone-aware; it is used for
    working hours and ``last_assigned_at``.
    """
    return (await assign_many(conn, [(lead, campaign)], settings, now))[0]


async def assign_many(
    conn: AsyncConnection,
    leads: list[tuple[RoutingLead, CampaignRouting]],
    settings: Settings,
    now: datetime,
) -> list[Decision]:
    """:func:`assign` for several leads in one transaction, in order: one member lock, one load count.

    Each decision sees the ones before it (the chosen member's open leads go up by one and their
    ``last_assigned_at`` moves on by a microsecond), exactly as if the leads had been assigned one
    after another - the worker routes a batch of freshly captured leads this way.
    """
    if not leads:
        return []
    member_rows = await repo.lock_active_members(conn)
    counts = await repo.open_lead_counts(
        conn, [r.id for r in member_rows], exclude_lead_ids=[lead.lead_id for lead, _ in leads]
    )
    members = [to_state(r, counts.get(int(r.id), 0)) for r in member_rows]
    rules = [to_rule(r) for r in await repo.list_rules(conn, active=True)]
    decisions: list[Decision] = []
    touched: dict[int, datetime] = {}
    for step, (lead, campaign) in enumerate(leads):
        at = now + timedelta(microseconds=step)
        decision = decide(lead, campaign, members, rules, settings.fallback_owner, at)
        if decision.member_id is not None:
            touched[decision.member_id] = at
            members = [
                replace(m, open_leads=m.open_leads + 1, last_assigned_at=at)
                if m.id == decision.member_id
                else m
                for m in members
            ]
        decisions.append(decision)
    for member_id, at in touched.items():
        await repo.touch_last_assigned(conn, member_id, at)
    return decisions


# --- team members -----------------------------------------------------------------------------------


def member_out(row: MemberRow, open_leads: int) -> MemberOut:
    data = asdict(row)
    data["services"] = data.get("services") or []
    data["regions"] = data.get("regions") or []
    data["open_leads"] = open_leads
    return MemberOut.model_validate(data)


async def get_member_row_or_404(conn: AsyncConnection, member_id: int, lock: bool = False) -> MemberRow:
    row = await repo.get_member(conn, member_id, lock=lock)
    if row is None:
        raise ApiError(404, "MEMBER_NOT_FOUND", "Team member not found", field="member_id")
    return row


async def get_member(conn: AsyncConnection, member_id: int) -> MemberOut:
    row = await get_member_row_or_404(conn, member_id)
    counts = await repo.open_lead_counts(conn, [member_id])
    return member_out(row, counts.get(member_id, 0))


async def member_by_email_or_404(conn: AsyncConnection, email: str) -> MemberRow:
    row = await repo.get_member_by_email(conn, email.strip())
    if row is None:
        raise ApiError(404, "MEMBER_NOT_FOUND", "No team member has this e-mail", field="email")
    return row


async def list_members(conn: AsyncConnection, active: bool | None = None) -> MemberList:
    rows = await repo.list_members(conn, active)
    counts = await repo.open_lead_counts(conn)
    return MemberList(items=[member_out(r, counts.get(int(r.id), 0)) for r in rows])


async def member_choices(conn: AsyncConnection, active: bool | None = None) -> list[MemberRow]:
    """The members to choose from in a page's menu, by id, without their open-lead counts (which
    :func:`list_members` counts over the leads on every call)."""
    return await repo.list_members(conn, active)


MENU_LOAD_CAP = 1000  # a menu says "1,000+ open" beyond


async def members_with_load(conn: AsyncConnection, active: bool | None = None) -> list[MemberOut]:
    """The members with their open leads counted up to :data:`MENU_LOAD_CAP` + 1 (an assignment menu:
    exact up to any sensible capacity, and bounded in cost however many leads a member has)."""
    rows = await repo.list_members(conn, active)
    counts = await repo.open_lead_counts_upto(conn, [int(r.id) for r in rows], MENU_LOAD_CAP)
    return [member_out(r, counts.get(int(r.id), 0)) for r in rows]


def _email_taken() -> ApiError:
    return ApiError(409, "MEMBER_EXISTS", "A team member with this e-mail already exists", field="email")


async def create_member(conn: AsyncConnection, body: MemberCreate) -> MemberOut:
    if await repo.get_member_by_email(conn, body.email) is not None:
        raise _email_taken()
    values = body.model_dump()
    values["services"] = values["services"] or []
    values["regions"] = values["regions"] or []
    values["created_at"] = values["updated_at"] = utcnow()
    try:
        member_id = await repo.create_member(conn, values)
    except IntegrityError as exc:  # a concurrent insert of the same e-mail
        raise _email_taken() from exc
    return await get_member(conn, member_id)


async def update_member(conn: AsyncConnection, member_id: int, body: MemberUpdate) -> MemberOut:
    await get_member_row_or_404(conn, member_id)
    values = body.model_dump(exclude_unset=True)
    for required in ("name", "email", "active", "capacity", "weight"):
        if required in values and values[required] is None:
            raise ApiError(400, "VALIDATION_ERROR", f"{required} cannot be null", field=required)
    for listed in ("services", "regions"):
        if listed in values and values[listed] is None:
            values[listed] = []
    if "email" in values:
        other = await repo.get_member_by_email(conn, values["email"])
        if other is not None and int(other.id) != member_id:
            raise _email_taken()
    if values:
        values["updated_at"] = utcnow()
        try:
            await repo.update_member(conn, member_id, values)
        except IntegrityError as exc:
            raise _email_taken() from exc
    return await get_member(conn, member_id)


async def delete_member(conn: AsyncConnection, member_id: int) -> None:
    """Delete a member without open leads (their routing rules go with them); else 409.

    The member row is locked first, so an assignment running at the same time either finishes before
    the check (and the check sees its lead) or runs after the delete (and no longer sees the member).
    """
    await get_member_row_or_404(conn, member_id, lock=True)
    if await repo.has_open_leads(conn, member_id):
        raise ApiError(
            409,
            "MEMBER_HAS_OPEN_LEADS",
            "This team member still has open leads: deactivate them (active: false) and reassign "
            "their leads instead",
            field="member_id",
        )
    await repo.remove_member(conn, member_id)


async def deactivate_member(conn: AsyncConnection, email: str) -> MemberOut:
    row = await member_by_email_or_404(conn, email)
    await repo.update_member(conn, int(row.id), {"active": False, "updated_at": utcnow()})
    return await get_member(conn, int(row.id))


# --- routing rules ----------------------------------------------------------------------------------


def rule_out(row: RuleRow) -> RuleOut:
    data = asdict(row)
    data["conditions"] = data.get("conditions") or {}
    return RuleOut.model_validate(data)


async def get_rule_row_or_404(conn: AsyncConnection, rule_id: int) -> RuleRow:
    row = await repo.get_rule(conn, rule_id)
    if row is None:
        raise ApiError(404, "RULE_NOT_FOUND", "Routing rule not found", field="rule_id")
    return row


async def get_rule(conn: AsyncConnection, rule_id: int) -> RuleOut:
    return rule_out(await get_rule_row_or_404(conn, rule_id))


async def list_rules(conn: AsyncConnection, active: bool | None = None) -> RuleList:
    return RuleList(items=[rule_out(r) for r in await repo.list_rules(conn, active)])


async def _check_member(conn: AsyncConnection, member_id: int) -> None:
    if await repo.get_member(conn, member_id) is None:
        raise ApiError(400, "VALIDATION_ERROR", "No team member has this id", field="member_id")


async def _check_name(conn: AsyncConnection, name: str, except_id: int | None = None) -> None:
    if await repo.rule_name_taken(conn, name, except_id):
        raise ApiError(409, "RULE_EXISTS", "A routing rule with this name already exists", field="name")


async def create_rule(conn: AsyncConnection, body: RuleCreate) -> RuleOut:
    await _check_member(conn, body.member_id)
    await _check_name(conn, body.name)
    values: dict[str, Any] = {
        "name": body.name,
        "position": body.position,
        "active": body.active,
        "conditions": body.conditions.stored(),
        "member_id": body.member_id,
        "created_at": utcnow(),
    }
    return await get_rule(conn, await repo.create_rule(conn, values))


async def update_rule(conn: AsyncConnection, rule_id: int, body: RuleUpdate) -> RuleOut:
    await get_rule_row_or_404(conn, rule_id)
    values = body.model_dump(exclude_unset=True)
    for required in ("name", "position", "active", "member_id"):
        if required in values and values[required] is None:
            raise ApiError(400, "VALIDATION_ERROR", f"{required} cannot be null", field=required)
    if "conditions" in values:
        values["conditions"] = body.conditions.stored() if body.conditions is not None else {}
    if "member_id" in values:
        await _check_member(conn, values["member_id"])
    if "name" in values:
        await _check_name(conn, values["name"], except_id=rule_id)
    if values:
        await repo.update_rule(conn, rule_id, values)
    return await get_rule(conn, rule_id)


async def delete_rule(conn: AsyncConnection, rule_id: int) -> None:
    await get_rule_row_or_404(conn, rule_id)
    await repo.remove_rule(conn, rule_id)
