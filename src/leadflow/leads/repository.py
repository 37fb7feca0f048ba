"""SQL for leads and their activities (SQLAlchemy Core: the capture path is hot)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.models import AnyRow, table_of
from leadflow.leads.models import Lead, LeadActivity
from leadflow.pipeline.models import Job

leads = table_of(Lead)
activities = table_of(LeadActivity)
jobs = table_of(Job)


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
    """Insert many leads in one statement; returns their ids in the order given."""
    result = await conn.execute(
        insert(leads).returning(leads.c.id, sort_by_parameter_order=True),
        rows,
    )
    return [int(r[0]) for r in result.all()]


async def insert_activities(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(activities), rows)


async def insert_jobs(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(jobs), rows)


async def get_by_public_id(conn: AsyncConnection, public_id: str) -> AnyRow | None:
    return (await conn.execute(select(leads).where(leads.c.public_id == public_id))).first()


async def status_row(conn: AsyncConnection, public_id: str) -> AnyRow | None:
    query = select(
        leads.c.public_id,
        leads.c.status,
        leads.c.updated_at,
        leads.c.assigned_to,
        leads.c.follow_up_date,
        leads.c.lead_grade,
    ).where(leads.c.public_id == public_id)
    return (await conn.execute(query)).first()


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
    if before_id is not None:
        conditions.append(leads.c.id < before_id)
    query = select(leads).where(and_(True, *conditions)).order_by(leads.c.id.desc()).limit(limit)
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


async def get_by_id(conn: AsyncConnection, lead_id: int) -> AnyRow | None:
    return (await conn.execute(select(leads).where(leads.c.id == lead_id))).first()
