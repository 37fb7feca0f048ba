"""SQL for team members, routing rules and the live load of each member."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.models import columns_of, rows_as, table_of
from leadflow.leads.models import STATUSES, Lead
from leadflow.routing.models import RoutingRule, TeamMember
from leadflow.routing.rules import CLOSED_STATUSES

members = table_of(TeamMember)
rules = table_of(RoutingRule)
leads = table_of(Lead)


@dataclass(frozen=True, slots=True)
class MemberRow:
    id: int
    name: str
    email: str
    phone: str | None
    active: bool
    services: list[str] | None
    regions: list[str] | None
    capacity: int
    working_hours: dict[str, Any] | None
    weight: int
    last_assigned_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RuleRow:
    """A routing rule with its member's e-mail (None when the member is gone)."""

    id: int
    name: str
    position: int
    active: bool
    conditions: dict[str, Any]
    member_id: int
    created_at: datetime
    member_email: str | None


MEMBER = columns_of(MemberRow, members)
RULE = [rules.c[f.name] for f in fields(RuleRow) if f.name != "member_email"]

# --- team members -----------------------------------------------------------------------------------


def _one(rows: list[Any]) -> Any:
    return rows[0] if rows else None


_MEMBERS = select(*MEMBER).order_by(members.c.id)
# Built once per filter (the lead page's assignment menu reads them on every view).
_MEMBERS_BY_ACTIVE = {flag: _MEMBERS.where(members.c.active == flag) for flag in (True, False)}


async def list_members(conn: AsyncConnection, active: bool | None = None) -> list[MemberRow]:
    query = _MEMBERS if active is None else _MEMBERS_BY_ACTIVE[active]
    return rows_as(MemberRow, await conn.execute(query))


async def lock_active_members(conn: AsyncConnection) -> list[MemberRow]:
    """The active members, ordered by id; on PostgreSQL and MySQL locked ``FOR UPDATE`` until commit.

    Every assignment locks the same rows in the same order, so concurrent assignments queue behind one
    another (no deadlock) and each sees the load the previous one committed. SQLite has no row locks;
    its single writer serialises transactions instead.
    """
    query = select(*MEMBER).where(members.c.active.is_(True)).order_by(members.c.id)
    if conn.dialect.name in ("postgresql", "mysql"):
        query = query.with_for_update()
    return rows_as(MemberRow, await conn.execute(query))


async def get_member(conn: AsyncConnection, member_id: int, lock: bool = False) -> MemberRow | None:
    """One member; ``lock`` takes the row lock assignments take (PostgreSQL and MySQL)."""
    query = select(*MEMBER).where(members.c.id == member_id)
    if lock and conn.dialect.name in ("postgresql", "mysql"):
        query = query.with_for_update()
    found: MemberRow | None = _one(rows_as(MemberRow, await conn.execute(query)))
    return found


async def get_members(conn: AsyncConnection, member_ids: Iterable[int]) -> dict[int, MemberRow]:
    """Members by id (the worker reads a batch's assignees at once)."""
    ids = list(member_ids)
    if not ids:
        return {}
    found = rows_as(MemberRow, await conn.execute(select(*MEMBER).where(members.c.id.in_(ids))))
    return {r.id: r for r in found}


async def get_member_by_email(conn: AsyncConnection, email: str) -> MemberRow | None:
    query = select(*MEMBER).where(members.c.email == email.lower())  # stored lower-cased
    found: MemberRow | None = _one(rows_as(MemberRow, await conn.execute(query)))
    return found


async def create_member(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(members).values(**values))
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def update_member(conn: AsyncConnection, member_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(members).where(members.c.id == member_id).values(**values))


async def remove_member(conn: AsyncConnection, member_id: int) -> None:
    await conn.execute(delete(members).where(members.c.id == member_id))


async def touch_last_assigned(conn: AsyncConnection, member_id: int, now: datetime) -> None:
    await conn.execute(update(members).where(members.c.id == member_id).values(last_assigned_at=now))


async def open_lead_counts(
    conn: AsyncConnection,
    member_ids: Iterable[int] | None = None,
    exclude_lead_ids: Iterable[int] = (),
) -> dict[int, int]:
    """Assigned leads that are not closed (won or lost), per member id (members without any: absent).

    ``exclude_lead_ids`` leaves out the leads being (re-)routed so they do not count against their own
    assignee. On MySQL the count is a locking read (``LOCK IN SHARE MODE``): under InnoDB's default
    REPEATABLE READ a plain read would use the transaction's first snapshot and could miss a concurrent
    assignment that committed while this transaction waited for the member locks.
    """
    query = (
        select(leads.c.assigned_member_id, func.count().label("n"))
        .where(leads.c.assigned_member_id.is_not(None), leads.c.status.not_in(CLOSED_STATUSES))
        .group_by(leads.c.assigned_member_id)
    )
    if member_ids is not None:
        ids = list(member_ids)
        if not ids:
            return {}
        query = query.where(leads.c.assigned_member_id.in_(ids))
    excluded = list(exclude_lead_ids)
    if excluded:
        query = query.where(leads.c.id.not_in(excluded))
    if conn.dialect.name == "mysql":
        query = query.with_for_update(read=True)
    return {int(row.assigned_member_id): int(row.n) for row in await conn.execute(query)}


async def open_lead_counts_upto(conn: AsyncConnection, member_ids: Sequence[int], cap: int) -> dict[int, int]:
    """Like :func:`open_lead_counts` for a menu: each member's count stops at ``cap`` + 1, one index
    range per member and open status, so a member with 100 000 leads costs no more than one with 1 000."""
    if not member_ids:
        return {}
    params = {f"m{i}": m for i, m in enumerate(member_ids)}
    row = (await conn.execute(_capped_counts(len(member_ids), cap), params)).one()
    return {m: int(n) for m, n in zip(member_ids, row, strict=True)}


@functools.lru_cache(maxsize=64)
def _capped_counts(members_count: int, cap: int) -> Select[Any]:
    """The statement of :func:`open_lead_counts_upto` for ``members_count`` members (``:m0`` ...),
    built once per team size."""
    open_statuses = [s for s in STATUSES if s not in CLOSED_STATUSES]

    def capped(i: int) -> Any:
        inner = (
            select(leads.c.id)
            .where(leads.c.assigned_member_id == bindparam(f"m{i}"), leads.c.status.in_(open_statuses))
            .limit(cap + 1)
            .subquery()
        )
        return select(func.count()).select_from(inner).scalar_subquery()

    return select(*(capped(i) for i in range(members_count)))


async def has_open_leads(conn: AsyncConnection, member_id: int) -> bool:
    return bool(await open_lead_counts(conn, [member_id]))


# --- routing rules ----------------------------------------------------------------------------------


def _rules_query() -> Select[Any]:
    return (
        select(*RULE, members.c.email.label("member_email"))
        .select_from(rules.outerjoin(members, members.c.id == rules.c.member_id))
        .order_by(rules.c.position, rules.c.id)
    )


async def list_rules(conn: AsyncConnection, active: bool | None = None) -> list[RuleRow]:
    """Rules in evaluation order (position, then id), each with its member's e-mail."""
    query = _rules_query()
    if active is not None:
        query = query.where(rules.c.active == active)
    return rows_as(RuleRow, await conn.execute(query))


async def get_rule(conn: AsyncConnection, rule_id: int) -> RuleRow | None:
    found: RuleRow | None = _one(
        rows_as(RuleRow, await conn.execute(_rules_query().where(rules.c.id == rule_id)))
    )
    return found


async def rule_name_taken(conn: AsyncConnection, name: str, except_id: int | None = None) -> bool:
    query = select(rules.c.id).where(func.lower(rules.c.name) == name.lower())
    if except_id is not None:
        query = query.where(rules.c.id != except_id)
    return (await conn.execute(query.limit(1))).first() is not None


async def create_rule(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(rules).values(**values))
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def update_rule(conn: AsyncConnection, rule_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(rules).where(rules.c.id == rule_id).values(**values))


async def remove_rule(conn: AsyncConnection, rule_id: int) -> None:
    await conn.execute(delete(rules).where(rules.c.id == rule_id))
