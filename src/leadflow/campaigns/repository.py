"""SQL for campaigns and their analytics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns.models import Campaign
from leadflow.kit.models import AnyRow, table_of
from leadflow.leads.models import Lead

campaigns = table_of(Campaign)
leads = table_of(Lead)

QUALIFIED = ("marketing_qualified", "sales_qualified", "customer")


async def get(conn: AsyncConnection, campaign_id: str) -> AnyRow | None:
    return (await conn.execute(select(campaigns).where(campaigns.c.id == campaign_id))).first()


async def get_many(conn: AsyncConnection, campaign_ids: Sequence[str]) -> Sequence[AnyRow]:
    if not campaign_ids:
        return []
    return (await conn.execute(select(campaigns).where(campaigns.c.id.in_(campaign_ids)))).all()


async def list_all(conn: AsyncConnection, status: str | None = None) -> Sequence[AnyRow]:
    query = select(campaigns).order_by(campaigns.c.created_at.desc(), campaigns.c.id)
    if status:
        query = query.where(campaigns.c.status == status)
    return (await conn.execute(query)).all()


async def create(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(campaigns).values(**values))


async def update_fields(conn: AsyncConnection, campaign_id: str, values: dict[str, Any]) -> None:
    await conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(**values))


async def has_leads(conn: AsyncConnection, campaign_id: str) -> bool:
    query = select(exists().where(leads.c.campaign_id == campaign_id))
    return bool((await conn.execute(query)).scalar())


async def remove(conn: AsyncConnection, campaign_id: str) -> None:
    await conn.execute(delete(campaigns).where(campaigns.c.id == campaign_id))


async def first_lead_at(conn: AsyncConnection, campaign_id: str) -> datetime | None:
    query = select(func.min(leads.c.created_at)).where(leads.c.campaign_id == campaign_id)
    value = (await conn.execute(query)).scalar()
    return value if isinstance(value, datetime) else None


async def analytics_groups(
    conn: AsyncConnection, campaign_id: str, start: datetime, end: datetime, *, per_day: Any = None
) -> Sequence[AnyRow]:
    """One scan of the campaign's leads in [start, end), grouped by source and utm_content (and by
    ``per_day``, an SQL expression for the day of ``created_at``, as column ``day``, when given)."""
    qualified = case((leads.c.qualification_status.in_(QUALIFIED), 1), else_=0)
    won_value = case((leads.c.status == "closed_won", leads.c.deal_value), else_=None)
    keys: list[Any] = [leads.c.source, leads.c.utm_content]
    if per_day is not None:
        keys.insert(0, per_day.label("day"))
    query = (
        select(
            *keys,
            func.count().label("total"),
            func.sum(qualified).label("qualified"),
            func.sum(leads.c.lead_score).label("score_sum"),
            func.sum(won_value).label("revenue"),
        )
        .where(
            leads.c.campaign_id == campaign_id,
            leads.c.created_at >= start,
            leads.c.created_at < end,
        )
        .group_by(*keys)
    )
    return (await conn.execute(query)).all()
