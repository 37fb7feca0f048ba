"""SQL for leads and their activities (SQLAlchemy Core: the capture path is hot)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.models import AnyRow, table_of
from leadflow.leads.models import CaptureClaim, Lead, LeadActivity
from leadflow.pipeline.models import Job

leads = table_of(Lead)
activities = table_of(LeadActivity)
jobs = table_of(Job)
claims = table_of(CaptureClaim)


async def count_by_email_hash(conn: AsyncConnection, email_hash: str, *, exclude_id: int) -> int:
    """How many other leads have this e-mail blind index."""
    query = select(func.count()).where(leads.c.email_hash == email_hash, leads.c.id != exclude_id)
    return int((await conn.execute(query)).scalar_one())


async def insert_activities(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(activities), rows)


# The lead page's statements, built once: each call then skips building the expression and its cache
# key (a measurable share of a page view's CPU).
_BY_PUBLIC_ID = select(leads).where(leads.c.public_id == bindparam("public_id"))


async def get_by_public_id(conn: AsyncConnection, public_id: str) -> AnyRow | None:
    return (await conn.execute(_BY_PUBLIC_ID, {"public_id": public_id})).first()


@dataclass(frozen=True, slots=True)
class StatusRow:
    public_id: str
    status: str
    updated_at: datetime
    assigned_to: str | None
    follow_up_date: datetime | None
    lead_grade: str


_STATUS = select(
    leads.c.public_id,
    leads.c.status,
    leads.c.updated_at,
    leads.c.assigned_to,
    leads.c.follow_up_date,
    leads.c.lead_grade,
).where(leads.c.public_id == bindparam("public_id"))


async def status_row(conn: AsyncConnection, public_id: str) -> StatusRow | None:
    row = (await conn.execute(_STATUS, {"public_id": public_id})).first()
    return StatusRow(*row) if row is not None else None


_PUBLIC_ID_OF = select(leads.c.public_id).where(leads.c.id == bindparam("lead_id"))


async def public_id_of(conn: AsyncConnection, lead_id: int | None) -> str | None:
    if lead_id is None:
        return None
    return (await conn.execute(_PUBLIC_ID_OF, {"lead_id": lead_id})).scalar()


@dataclass(frozen=True, slots=True)
class LeadFilter:
    campaign_id: str | None = None
    status: str | None = None
    grade: str | None = None
    assigned_to: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    only_assigned_to: str | None = None  # a sales user's own leads
    email_hash: str | None = None  # blind index of an exact e-mail address
    source: str | None = None
    channel: str | None = None
    public_id: str | None = None  # an exact lead id
    phone_hash: str | None = None  # blind index of an exact phone number
    oldest_first: bool = False  # ``before_id`` then pages upwards (ids greater than it)


# What a listed lead shows (``leads.schemas.LeadSummary``): lists read these, not every column (the
# message, IP address and user agent are neither shown nor decrypted there; nor is the enrichment JSON).
SUMMARY = tuple(
    leads.c[name]
    for name in (
        "id", "public_id", "uuid", "first_name", "last_name", "email", "phone", "company", "campaign_id",
        "campaign_name", "source", "medium", "channel", "service_interest", "urgency", "lead_score",
        "lead_grade", "qualification_status", "status", "assigned_to", "follow_up_date", "deal_value",
        "created_at", "updated_at", "contacted_at",
    )
)  # fmt: skip


async def list_page(
    conn: AsyncConnection,
    flt: LeadFilter,
    before_id: int | None,
    limit: int,
    columns: Sequence[ColumnElement[Any]] | None = None,
) -> Sequence[AnyRow]:
    """A page of the filtered leads, newest (or oldest) first; ``columns`` (e.g. :data:`SUMMARY`):
    only those, else every column."""
    conditions = []
    if flt.campaign_id:
        conditions.append(leads.c.campaign_id == flt.campaign_id)
    if flt.status:
        conditions.append(leads.c.status == flt.status)
    if flt.grade:
        conditions.append(leads.c.lead_grade == flt.grade)
    if flt.assigned_to:
        conditions.append(leads.c.assigned_to == flt.assigned_to)
    if flt.created_from:
        conditions.append(leads.c.created_at >= flt.created_from)
    if flt.created_to:
        conditions.append(leads.c.created_at < flt.created_to)
    if flt.only_assigned_to is not None:
        conditions.append(leads.c.assigned_to == flt.only_assigned_to)
    if flt.email_hash is not None:
        conditions.append(leads.c.email_hash == flt.email_hash)
    if flt.source:
        conditions.append(leads.c.source == flt.source)
    if flt.channel:
        conditions.append(leads.c.channel == flt.channel)
    if flt.public_id is not None:
        conditions.append(leads.c.public_id == flt.public_id)
    if flt.phone_hash is not None:
        conditions.append(leads.c.phone_hash == flt.phone_hash)
    if before_id is not None:
        conditions.append(leads.c.id > before_id if flt.oldest_first else leads.c.id < before_id)
    order = leads.c.id.asc() if flt.oldest_first else leads.c.id.desc()
    query = select(*columns) if columns else select(leads)
    query = query.where(and_(True, *conditions)).order_by(order).limit(limit)
    return (await conn.execute(query)).all()


OPEN_STATUSES = ("new", "contacted", "qualified", "proposal")
# The inbox's orders, each served per open status by an index that starts with ``status`` (all leads)
# or ``assigned_to, status`` (one person's): idx_open_order / idx_owner_order, idx_open_due /
# idx_owner_due (migration 0015).
INBOX_ORDER = (leads.c.lead_grade, leads.c.created_at, leads.c.id)  # best grade first, then oldest
DUE_ORDER = (leads.c.follow_up_date, leads.c.id)  # earliest follow-up first


async def _anchor(
    conn: AsyncConnection, order: tuple[ColumnElement[Any], ...], after_id: int | None
) -> tuple[Any, ...] | None:
    """The sort key of the lead a page ends with (None: from the top, also when it is gone)."""
    if after_id is None:
        return None
    row = (await conn.execute(select(*order).where(leads.c.id == after_id))).first()
    return None if row is None or any(v is None for v in row) else tuple(row)


def _after(order: tuple[ColumnElement[Any], ...], expand: bool) -> ColumnElement[bool]:
    """``order`` after the sort key ``:k0``, ``:k1``…: a row-value comparison, which PostgreSQL and
    SQLite read as an index range; MySQL/MariaDB only do that with it spelt out (``expand``):
    ``a > :k0 OR (a = :k0 AND (b > :k1 OR …))``."""
    keys = [bindparam(f"k{i}", type_=c.type) for i, c in enumerate(order)]
    if not expand:
        return tuple_(*order) > tuple_(*keys)
    condition = order[-1] > keys[-1]
    for column, key in zip(reversed(order[:-1]), reversed(keys[:-1]), strict=True):
        condition = or_(column > key, and_(column == key, condition))
    return condition


@functools.cache
def _in_order(due: bool, owner: bool, after: bool, limit: int, expand: bool) -> Select[Any]:
    """Ids of open leads in the inbox's order (``due``: follow-ups before ``:until`` in theirs), of
    ``:owner`` if ``owner``, after the sort key ``:k0``, ``:k1``… if ``after`` (``expand``: see
    :func:`_after`); built once per shape.

    One index range per open status, each read in order and cut at ``limit``, then merged: the cost is
    ``limit`` entries per status whatever the number of leads (a single ``status IN (…)`` range would
    have to sort every open lead, and walking the order alone would step over every closed one)."""
    order = DUE_ORDER if due else INBOX_ORDER
    where: list[Any] = [leads.c.follow_up_date < bindparam("until")] if due else []
    if owner:
        where.append(leads.c.assigned_to == bindparam("owner"))
    if after:
        where.append(_after(order, expand))
    branches = [
        select(*order).where(leads.c.status == status, *where).order_by(*order).limit(limit).subquery()
        for status in OPEN_STATUSES
    ]
    merged = union_all(*(select(b) for b in branches)).subquery()
    return select(merged.c.id).order_by(*(merged.c[c.name] for c in order)).limit(limit)


async def _ids_in_order(
    conn: AsyncConnection, due: bool, params: dict[str, Any], after_id: int | None, limit: int
) -> list[int]:
    anchor = await _anchor(conn, DUE_ORDER if due else INBOX_ORDER, after_id)
    expand = conn.dialect.name == "mysql"
    query = _in_order(due, "owner" in params, anchor is not None, limit, expand)
    keys = {f"k{i}": v for i, v in enumerate(anchor or ())}
    return [int(i) for i in (await conn.execute(query, {**params, **keys})).scalars()]


def _params(assigned_to: str | None, **more: Any) -> dict[str, Any]:
    return more if assigned_to is None else {"owner": assigned_to, **more}


async def open_ids(
    conn: AsyncConnection, assigned_to: str | None, after_id: int | None, limit: int
) -> list[int]:
    """Open leads (``assigned_to`` None: everyone's), best grade first, then oldest first."""
    return await _ids_in_order(conn, False, _params(assigned_to), after_id, limit)


async def due_ids(
    conn: AsyncConnection, assigned_to: str | None, until: datetime, after_id: int | None, limit: int
) -> list[int]:
    """Open leads whose follow-up date is before ``until`` (overdue and due today), earliest first."""
    return await _ids_in_order(conn, True, _params(assigned_to, until=until), after_id, limit)


@functools.cache
def _counts(owner: bool, cap: int) -> Select[Any]:
    def capped(due: bool) -> Any:
        where: list[ColumnElement[bool]] = [leads.c.status.in_(OPEN_STATUSES)]
        if owner:
            where.append(leads.c.assigned_to == bindparam("owner"))
        if due:
            where.append(leads.c.follow_up_date < bindparam("until"))
        inner = select(leads.c.id).where(*where).limit(cap + 1).subquery()
        return select(func.count()).select_from(inner).scalar_subquery()

    return select(capped(False), capped(True))


async def count_open(
    conn: AsyncConnection, assigned_to: str | None, due_before: datetime, cap: int
) -> tuple[int, int]:
    """How many open leads, and how many of them with a follow-up before ``due_before``, each counted
    up to ``cap`` + 1: the inbox says "1,000+" rather than count every open lead at every view and poll."""
    query = _counts(assigned_to is not None, cap)
    row = (await conn.execute(query, _params(assigned_to, until=due_before))).one()
    return int(row[0]), int(row[1])


async def updated_at_of(conn: AsyncConnection, lead_ids: Sequence[int]) -> dict[int, datetime]:
    if not lead_ids:
        return {}
    query = select(leads.c.id, leads.c.updated_at).where(leads.c.id.in_(lead_ids))
    return {int(i): at for i, at in await conn.execute(query)}


_JOBS_OF_LEAD = select(jobs).where(jobs.c.lead_id == bindparam("lead_id")).order_by(jobs.c.id)
_ACTIVITIES_FOR = (
    select(activities)
    .where(activities.c.lead_id == bindparam("lead_id"))
    .order_by(activities.c.created_at, activities.c.id)
)


async def jobs_of_lead(conn: AsyncConnection, lead_id: int) -> Sequence[AnyRow]:
    """A lead's jobs (deliveries and processing), oldest first."""
    return (await conn.execute(_JOBS_OF_LEAD, {"lead_id": lead_id})).all()


async def activities_for(conn: AsyncConnection, lead_id: int) -> Sequence[AnyRow]:
    return (await conn.execute(_ACTIVITIES_FOR, {"lead_id": lead_id})).all()


async def lock_for_update(conn: AsyncConnection, public_id: str) -> AnyRow | None:
    query = select(leads).where(leads.c.public_id == public_id)
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def update_lead(conn: AsyncConnection, lead_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(leads).where(leads.c.id == lead_id).values(**values))


async def get_many(
    conn: AsyncConnection,
    lead_ids: Iterable[int],
    lock: bool = False,
    columns: Sequence[ColumnElement[Any]] | None = None,
) -> dict[int, AnyRow]:
    """Leads by internal id (``lock``: ``FOR UPDATE`` where the database has it; ``columns``: only
    those, which must include ``id``)."""
    ids = list(lead_ids)
    if not ids:
        return {}
    query = (select(*columns) if columns else select(leads)).where(leads.c.id.in_(ids))
    if lock and conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return {int(row.id): row for row in await conn.execute(query)}


async def due_follow_ups(conn: AsyncConnection, now: datetime, limit: int = 500) -> Sequence[AnyRow]:
    """Open leads whose follow-up date has come and that have no ``reminder_due`` activity since."""
    reminded = (
        select(activities.c.id)
        .where(
            activities.c.lead_id == leads.c.id,
            activities.c.activity_type == "reminder_due",
            activities.c.created_at >= leads.c.follow_up_date,
        )
        .exists()
    )
    query = (
        select(leads.c.id, leads.c.follow_up_date)
        .where(
            leads.c.follow_up_date.is_not(None),
            leads.c.follow_up_date <= now,
            leads.c.status.not_in(("closed_won", "closed_lost")),
            leads.c.anonymized_at.is_(None),
            ~reminded,
        )
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def phones_without_index(conn: AsyncConnection, after_id: int, limit: int) -> Sequence[AnyRow]:
    """Leads with a phone number and no phone blind index yet (stored before it existed), by id."""
    query = (
        select(leads.c.id, leads.c.phone)
        .where(leads.c.id > after_id, leads.c.phone.is_not(None), leads.c.phone_hash.is_(None))
        .order_by(leads.c.id)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def set_phone_hashes(conn: AsyncConnection, hashes: dict[int, str]) -> None:
    if hashes:
        statement = (
            update(leads).where(leads.c.id == bindparam("lead")).values(phone_hash=bindparam("digest"))
        )
        await conn.execute(statement, [{"lead": k, "digest": v} for k, v in hashes.items()])
