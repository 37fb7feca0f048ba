"""SQL for reports: grade mix, speed to lead per rep and the leads still waiting for first contact."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.models import columns_of, rows_as, table_of
from leadflow.leads.models import Lead

leads = table_of(Lead)


@dataclass(frozen=True, slots=True)
class Assignment:
    """An assigned lead: to whom, captured when, first contacted when."""

    assigned_to: str
    created_at: datetime
    contacted_at: datetime | None


@dataclass(frozen=True, slots=True)
class WaitingRow:
    """A lead nobody has contacted yet."""

    public_id: str
    lead_grade: str
    lead_score: int
    assigned_to: str | None
    created_at: datetime


ASSIGNMENT = columns_of(Assignment, leads)
WAITING = columns_of(WaitingRow, leads)


def _in_period(campaign_id: str, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    return [leads.c.campaign_id == campaign_id, leads.c.created_at >= start, leads.c.created_at < end]


async def grade_counts(
    conn: AsyncConnection, campaign_id: str, start: datetime, end: datetime
) -> dict[str, int]:
    """Leads captured in [start, end) by grade (one scan of ``idx_campaign``)."""
    query = select(leads.c.lead_grade, func.count()).where(*_in_period(campaign_id, start, end))
    return {str(g): int(n) for g, n in await conn.execute(query.group_by(leads.c.lead_grade))}


async def assignments(
    conn: AsyncConnection, campaign_id: str, start: datetime, end: datetime
) -> list[Assignment]:
    """Assigned leads captured in [start, end): assignee, capture and first-contact times."""
    query = select(*ASSIGNMENT).where(*_in_period(campaign_id, start, end), leads.c.assigned_to.is_not(None))
    return rows_as(Assignment, await conn.execute(query))


def _waiting(campaign_id: str) -> list[ColumnElement[bool]]:
    return [
        leads.c.campaign_id == campaign_id,
        leads.c.status == "new",
        leads.c.contacted_at.is_(None),
        leads.c.anonymized_at.is_(None),
    ]


async def waiting(conn: AsyncConnection, campaign_id: str, limit: int) -> tuple[int, list[WaitingRow]]:
    """Leads nobody has contacted yet (status ``new``): how many, and the ``limit`` oldest."""
    count = (await conn.execute(select(func.count()).where(*_waiting(campaign_id)))).scalar() or 0
    query = select(*WAITING).where(*_waiting(campaign_id)).order_by(leads.c.created_at, leads.c.id)
    oldest = rows_as(WaitingRow, await conn.execute(query.limit(limit)))
    return int(count), oldest
