"""SQL for leads and their activities (SQLAlchemy Core: the capture path is hot)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialects
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.db import IN_CHUNK, PointReader, chunks
from leadflow.kit.models import AnyRow, UTCDateTime, table_of
from leadflow.leads.models import CaptureClaim, Lead, LeadActivity
from leadflow.pipeline.models import Job

leads = table_of(Lead)
activities = table_of(LeadActivity)
jobs = table_of(Job)
claims = table_of(CaptureClaim)


async def lock_claims(conn: AsyncConnection, keys: Iterable[str], now: datetime) -> None:
    """Upsert the capture claims ``keys`` (in sorted order): row locks held until this transaction ends.

    A concurrent transaction that claims one of the same keys waits here until this one commits or
    rolls back, then sees its leads (READ COMMITTED: every statement reads the latest commits).
    Sorted order means two batches sharing several keys cannot deadlock on each other.
    """
    rows = [{"claim_key": key, "touched_at": now} for key in sorted(set(keys))]
    if not rows:
        return
    name = conn.dialect.name
    if name == "postgresql":
        pg = postgresql.insert(claims).values(rows)
        await conn.execute(pg.on_conflict_do_update(index_elements=["claim_key"], set_={"touched_at": now}))
    elif name == "mysql":
        my = mysql.insert(claims).values(rows)
        await conn.execute(my.on_duplicate_key_update(touched_at=my.inserted.touched_at))
    else:
        lite = sqlite_dialects.insert(claims).values(rows)
        await conn.execute(lite.on_conflict_do_update(index_elements=["claim_key"], set_={"touched_at": now}))


async def prune_claims(conn: AsyncConnection, before: datetime) -> int:
    """Drop claims not touched since ``before`` (older than the de-duplication window)."""
    result = await conn.execute(delete(claims).where(claims.c.touched_at < before))
    return int(result.rowcount or 0)


async def count_by_email_hash(conn: AsyncConnection, email_hash: str, *, exclude_id: int) -> int:
    """How many other leads have this e-mail blind index."""
    query = select(func.count()).where(leads.c.email_hash == email_hash, leads.c.id != exclude_id)
    return int((await conn.execute(query)).scalar_one())


async def latest_by_email_hashes(conn: AsyncConnection, hashes: Iterable[str]) -> Sequence[AnyRow]:
    """Every earlier lead of these people (blind index look-up), newest first."""
    query = (
        select(leads.c.id, leads.c.public_id, leads.c.campaign_id, leads.c.email_hash, leads.c.created_at)
        .where(leads.c.email_hash.in_(sorted(set(hashes))))
        .order_by(leads.c.created_at.desc(), leads.c.id.desc())
    )
    return (await conn.execute(query)).all()


async def seen_visitors(conn: AsyncConnection, visitor_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(visitor_ids))
    if not ids:
        return set()
    query = select(leads.c.visitor_id).where(leads.c.visitor_id.in_(ids)).distinct()
    return {row[0] for row in await conn.execute(query)}


async def by_idempotency_keys(conn: AsyncConnection, pairs: Iterable[tuple[str, str]]) -> Sequence[AnyRow]:
    keys = sorted({key for _, key in pairs})
    if not keys:
        return []
    query = select(
        leads.c.id,
        leads.c.public_id,
        leads.c.campaign_id,
        leads.c.idempotency_key,
        leads.c.email_hash,
        leads.c.lead_grade,
        leads.c.visitor_id,
        leads.c.session_id,
    ).where(leads.c.idempotency_key.in_(keys))
    return (await conn.execute(query)).all()


async def insert_leads(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert many leads in one executemany; returns their ids in the order given.

    No RETURNING: with it SQLAlchemy runs one INSERT per row on SQLite to keep the order (a batch of
    100 took ~80 ms); a plain executemany plus one indexed look-up by public id is ~10x cheaper.
    """
    await conn.execute(insert(leads), rows)
    ids = {
        public_id: int(pk)
        for pk, public_id in await conn.execute(
            select(leads.c.id, leads.c.public_id).where(leads.c.public_id.in_([r["public_id"] for r in rows]))
        )
    }
    return [ids[r["public_id"]] for r in rows]


async def insert_activities(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(activities), rows)


async def insert_jobs(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(jobs), rows)


# -- The same look-ups on a raw sqlite3 connection (the capture writer's direct SQLite path) --------


class EarlierLead(NamedTuple):
    id: int
    public_id: str
    campaign_id: str
    email_hash: str
    created_at: datetime


class KeyedLead(NamedTuple):
    id: int
    public_id: str
    campaign_id: str
    idempotency_key: str
    email_hash: str
    lead_grade: str
    visitor_id: str | None
    session_id: str | None


def _in_lists(db: sqlite3.Connection, sql: str, values: Iterable[str]) -> list[Any]:
    """Run ``sql`` (with one ``{marks}`` IN list) over the distinct values, in chunks."""
    keys = sorted(set(values))
    rows: list[Any] = []
    for part in chunks(keys, IN_CHUNK):
        rows.extend(db.execute(sql.format(marks=",".join("?" * len(part))), part).fetchall())
    return rows


def latest_by_email_hashes_sqlite(db: sqlite3.Connection, hashes: Iterable[str]) -> list[EarlierLead]:
    """:func:`latest_by_email_hashes` on a raw sqlite3 connection: newest first."""
    rows = _in_lists(
        db,
        "SELECT id, public_id, campaign_id, email_hash, created_at FROM leads WHERE email_hash IN ({marks})",
        hashes,
    )
    found = [
        EarlierLead(pk, public, campaign, email, _sqlite_time(at)) for pk, public, campaign, email, at in rows
    ]
    found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return found


def seen_visitors_sqlite(db: sqlite3.Connection, visitor_ids: Iterable[str]) -> set[str]:
    rows = _in_lists(db, "SELECT DISTINCT visitor_id FROM leads WHERE visitor_id IN ({marks})", visitor_ids)
    return {row[0] for row in rows}


def by_idempotency_keys_sqlite(db: sqlite3.Connection, pairs: Iterable[tuple[str, str]]) -> list[KeyedLead]:
    rows = _in_lists(
        db,
        "SELECT id, public_id, campaign_id, idempotency_key, email_hash, lead_grade, visitor_id, session_id"
        " FROM leads WHERE idempotency_key IN ({marks})",
        (key for _, key in pairs),
    )
    return [KeyedLead(*row) for row in rows]


def next_lead_id_sqlite(db: sqlite3.Connection) -> int:
    """The id SQLite itself would give the next lead (the table has no AUTOINCREMENT): max + 1.

    Only meaningful inside a write transaction (BEGIN IMMEDIATE), which keeps other writers out.
    """
    row = db.execute("SELECT max(id) FROM leads").fetchone()
    return int(row[0] or 0) + 1


async def get_by_public_id(conn: AsyncConnection, public_id: str) -> AnyRow | None:
    return (await conn.execute(select(leads).where(leads.c.public_id == public_id))).first()


async def existing_public_ids(conn: AsyncConnection, public_ids: Sequence[str]) -> set[str]:
    """Which of these lead ids are stored (a replayed spool skips them)."""
    found: set[str] = set()
    for part in chunks(public_ids, IN_CHUNK):
        query = select(leads.c.public_id).where(leads.c.public_id.in_(list(part)))
        found.update((await conn.execute(query)).scalars())
    return found


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
# The same statement as SQLite text, for the synchronous point reader.
STATUS_SQLITE = str(_STATUS.compile(dialect=sqlite_dialect(), compile_kwargs={"render_postcompile": True}))
_UTC = UTCDateTime()


async def status_row(conn: AsyncConnection, public_id: str) -> StatusRow | None:
    row = (await conn.execute(_STATUS, {"public_id": public_id})).first()
    return StatusRow(*row) if row is not None else None


def status_row_sqlite(reader: PointReader, public_id: str) -> StatusRow | None:
    row = reader.one(STATUS_SQLITE, (public_id,))
    if row is None:
        return None
    public, status, updated, assigned, follow_up, grade = row
    return StatusRow(
        public,
        status,
        _sqlite_time(updated),
        assigned,
        _sqlite_time(follow_up) if follow_up is not None else None,
        grade,
    )


def _sqlite_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


async def public_id_of(conn: AsyncConnection, lead_id: int | None) -> str | None:
    if lead_id is None:
        return None
    return (await conn.execute(select(leads.c.public_id).where(leads.c.id == lead_id))).scalar()


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
    oldest_first: bool = False  # ``before_id`` then pages upwards (ids greater than it)


async def list_page(
    conn: AsyncConnection, flt: LeadFilter, before_id: int | None, limit: int
) -> Sequence[AnyRow]:
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
    if before_id is not None:
        conditions.append(leads.c.id > before_id if flt.oldest_first else leads.c.id < before_id)
    order = leads.c.id.asc() if flt.oldest_first else leads.c.id.desc()
    query = select(leads).where(and_(True, *conditions)).order_by(order).limit(limit)
    return (await conn.execute(query)).all()


OPEN_STATUSES = ("new", "contacted", "qualified", "proposal")


def _owner(assigned_to: str | None) -> list[Any]:
    return [] if assigned_to is None else [leads.c.assigned_to == assigned_to]


async def open_leads(conn: AsyncConnection, assigned_to: str | None, limit: int) -> Sequence[AnyRow]:
    """Open leads (``assigned_to`` None: everyone's), best grade first, then oldest first."""
    query = (
        select(leads)
        .where(leads.c.status.in_(OPEN_STATUSES), *_owner(assigned_to))
        .order_by(leads.c.lead_grade, leads.c.created_at, leads.c.id)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def follow_ups_until(
    conn: AsyncConnection, assigned_to: str | None, until: datetime, limit: int
) -> Sequence[AnyRow]:
    """Open leads whose follow-up date is before ``until`` (overdue and due today), earliest first."""
    query = (
        select(leads)
        .where(
            leads.c.follow_up_date.is_not(None),
            leads.c.follow_up_date < until,
            leads.c.status.in_(OPEN_STATUSES),
            *_owner(assigned_to),
        )
        .order_by(leads.c.follow_up_date, leads.c.id)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def open_mark(conn: AsyncConnection, assigned_to: str | None) -> tuple[int, int, datetime | None]:
    """(count, highest id, latest update) of the open leads: changes whenever the inbox would."""
    query = select(func.count(), func.max(leads.c.id), func.max(leads.c.updated_at)).where(
        leads.c.status.in_(OPEN_STATUSES), *_owner(assigned_to)
    )
    count, top, updated = (await conn.execute(query)).one()
    return int(count or 0), int(top or 0), updated


async def jobs_of_lead(conn: AsyncConnection, lead_id: int) -> Sequence[AnyRow]:
    """A lead's jobs (deliveries and processing), oldest first."""
    query = select(jobs).where(jobs.c.lead_id == lead_id).order_by(jobs.c.id)
    return (await conn.execute(query)).all()


async def activities_for(conn: AsyncConnection, lead_id: int) -> Sequence[AnyRow]:
    query = (
        select(activities)
        .where(activities.c.lead_id == lead_id)
        .order_by(activities.c.created_at, activities.c.id)
    )
    return (await conn.execute(query)).all()


async def lock_for_update(conn: AsyncConnection, public_id: str) -> AnyRow | None:
    query = select(leads).where(leads.c.public_id == public_id)
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def update_lead(conn: AsyncConnection, lead_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(leads).where(leads.c.id == lead_id).values(**values))


async def get_many(conn: AsyncConnection, lead_ids: Iterable[int], lock: bool = False) -> dict[int, AnyRow]:
    """Leads by internal id (``lock``: ``FOR UPDATE`` where the database has it)."""
    ids = list(lead_ids)
    if not ids:
        return {}
    query = select(leads).where(leads.c.id.in_(ids))
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
