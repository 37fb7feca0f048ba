"""SQL for campaigns and their analytics: the campaign rows, the grouped lead scans, and the stored
daily sums of ``rollup`` (``analytics_days``, ``analytics_daily``, ``analytics_state``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, delete, exists, func, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns.models import AnalyticsDaily, AnalyticsDay, AnalyticsState, Campaign
from leadflow.kit.models import AnyRow, columns_of, rows_as, table_of
from leadflow.leads.models import Lead

campaigns = table_of(Campaign)
leads = table_of(Lead)
days_t = table_of(AnalyticsDay)
daily = table_of(AnalyticsDaily)
state = table_of(AnalyticsState)

QUALIFIED = ("marketing_qualified", "sales_qualified", "customer")


@dataclass(frozen=True, slots=True)
class CampaignRow:
    """A campaign as stored."""

    id: str
    name: str
    description: str | None
    campaign_type: str
    status: str
    start_date: date | None
    end_date: date | None
    budget: Decimal | None
    target_leads: int | None
    landing_page_url: str | None
    auto_assign: bool
    assigned_to: str | None
    notification_emails: list[str] | None
    token_hash: str | None
    allowed_origins: list[str] | None
    services: list[str] | None
    settings: dict[str, Any] | None
    form_title: str | None
    form_intro: str | None
    thank_you_url: str | None
    consent_text: str | None
    privacy_notice_url: str | None
    privacy_notice_version: str | None
    frame_ancestors: list[str] | None
    created_at: datetime
    updated_at: datetime


CAMPAIGN = columns_of(CampaignRow, campaigns)


async def get(conn: AsyncConnection, campaign_id: str) -> CampaignRow | None:
    found = rows_as(CampaignRow, await conn.execute(select(*CAMPAIGN).where(campaigns.c.id == campaign_id)))
    return found[0] if found else None


async def get_many(conn: AsyncConnection, campaign_ids: Sequence[str]) -> Sequence[AnyRow]:
    """The campaigns' rows (the worker's batch loader; its consumers still take untyped rows)."""
    if not campaign_ids:
        return []
    return (await conn.execute(select(campaigns).where(campaigns.c.id.in_(campaign_ids)))).all()


async def list_all(conn: AsyncConnection, status: str | None = None) -> list[CampaignRow]:
    query = select(*CAMPAIGN).order_by(campaigns.c.created_at.desc(), campaigns.c.id)
    if status:
        query = query.where(campaigns.c.status == status)
    return rows_as(CampaignRow, await conn.execute(query))


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


@dataclass(slots=True)
class Group:
    """The sums of a campaign's leads for one source and ``utm_content``."""

    source: str
    utm_content: str | None
    total: int
    qualified: int
    score_sum: int
    revenue: Decimal


def _group(row: Any) -> Group:
    return Group(
        source=row.source,
        utm_content=row.utm_content,
        total=int(row.total or 0),
        qualified=int(row.qualified or 0),
        score_sum=int(row.score_sum or 0),
        revenue=Decimal(row.revenue or 0),
    )


def as_date(value: Any) -> date:
    """A DATE column's value (SQLite returns text)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _scan(campaign_id: str, start: datetime, end: datetime, keys: list[Any]) -> Any:
    qualified = case((leads.c.qualification_status.in_(QUALIFIED), 1), else_=0)
    won_value = case((leads.c.status == "closed_won", leads.c.deal_value), else_=None)
    keys = [*keys, leads.c.source, leads.c.utm_content]
    return (
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


async def analytics_groups(
    conn: AsyncConnection, campaign_id: str, start: datetime, end: datetime
) -> list[Group]:
    """One scan of the campaign's leads in [start, end), grouped by source and utm_content."""
    return [_group(r) for r in await conn.execute(_scan(campaign_id, start, end, []))]


def _day_of(dialect: str, column: Any) -> Any:
    """The UTC calendar day of a stored timestamp, in SQL (each backend stores UTC its own way)."""
    if dialect == "postgresql":
        return func.date(func.timezone("UTC", column))
    if dialect == "sqlite":
        return func.substr(column, 1, 10)  # 'YYYY-MM-DD HH:MM:SS.ffffff', UTC
    return func.date(column)  # MySQL DATETIME(6), UTC


async def analytics_groups_per_day(
    conn: AsyncConnection, campaign_id: str, start: datetime, end: datetime
) -> list[tuple[date, Group]]:
    """:func:`analytics_groups`, also grouped by the UTC day of ``created_at``."""
    day = _day_of(conn.dialect.name, leads.c.created_at).label("day")
    return [(as_date(r.day), _group(r)) for r in await conn.execute(_scan(campaign_id, start, end, [day]))]


# --- the analytics dashboard: grouped scans of the leads of [start, end) ---------------------------


@dataclass(frozen=True, slots=True)
class DayTotal:
    """A campaign's leads of one UTC day."""

    campaign_id: str
    day: date
    leads: int
    qualified: int
    won: int
    revenue: Decimal


@dataclass(frozen=True, slots=True)
class Mix:
    """How many leads share a channel, source, grade and status."""

    channel: str | None
    source: str
    grade: str
    status: str
    leads: int


@dataclass(frozen=True, slots=True)
class ContentTotal:
    utm_content: str
    leads: int
    qualified: int


@dataclass(frozen=True, slots=True)
class ResponseBucket:
    """Leads of a campaign and rep by their capture-to-first-contact time, in minutes rounded to the
    minute (under 2 h), 15 minutes (under a day) or the hour; ``WAITING`` not contacted yet, ``LOST``
    lost without contact."""

    campaign_id: str
    rep: str | None
    minutes: float
    leads: int


WAITING, LOST = -1.0, -2.0


def _in_period(campaign_id: str | None, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    where = [leads.c.created_at >= start, leads.c.created_at < end]
    if campaign_id is not None:
        where.append(leads.c.campaign_id == campaign_id)
    return where


async def day_totals(
    conn: AsyncConnection, campaign_id: str | None, start: datetime, end: datetime
) -> list[DayTotal]:
    """Per campaign and UTC day: leads, qualified, won and closed-won revenue (one scan)."""
    day = _day_of(conn.dialect.name, leads.c.created_at).label("day")
    qualified = case((leads.c.qualification_status.in_(QUALIFIED), 1), else_=0)
    won = case((leads.c.status == "closed_won", 1), else_=0)
    won_value = case((leads.c.status == "closed_won", leads.c.deal_value), else_=None)
    query = (
        select(
            leads.c.campaign_id,
            day,
            func.count().label("leads"),
            func.sum(qualified).label("qualified"),
            func.sum(won).label("won"),
            func.sum(won_value).label("revenue"),
        )
        .where(*_in_period(campaign_id, start, end))
        .group_by(leads.c.campaign_id, day)
    )
    return [
        DayTotal(
            campaign_id=r.campaign_id,
            day=as_date(r.day),
            leads=int(r.leads),
            qualified=int(r.qualified or 0),
            won=int(r.won or 0),
            revenue=Decimal(r.revenue or 0),
        )
        for r in await conn.execute(query)
    ]


async def mix(conn: AsyncConnection, campaign_id: str | None, start: datetime, end: datetime) -> list[Mix]:
    """Leads by channel, source, grade and status (one scan; a few dozen groups)."""
    keys = (leads.c.channel, leads.c.source, leads.c.lead_grade, leads.c.status)
    query = (
        select(*keys, func.count().label("leads")).where(*_in_period(campaign_id, start, end)).group_by(*keys)
    )
    return [Mix(r.channel, r.source, r.lead_grade, r.status, int(r.leads)) for r in await conn.execute(query)]


async def content_totals(
    conn: AsyncConnection, campaign_id: str | None, start: datetime, end: datetime
) -> list[ContentTotal]:
    """Leads and qualified leads per ``utm_content`` (leads without one left out)."""
    qualified = case((leads.c.qualification_status.in_(QUALIFIED), 1), else_=0)
    query = (
        select(leads.c.utm_content, func.count().label("leads"), func.sum(qualified).label("qualified"))
        .where(*_in_period(campaign_id, start, end), leads.c.utm_content.is_not(None))
        .group_by(leads.c.utm_content)
    )
    return [
        ContentTotal(r.utm_content, int(r.leads), int(r.qualified or 0)) for r in await conn.execute(query)
    ]


def _seconds_to_contact(dialect: str) -> Any:
    """``contacted_at - created_at`` in seconds, in SQL (each backend its own way)."""
    first, contacted = leads.c.created_at, leads.c.contacted_at
    if dialect == "postgresql":
        return func.extract("epoch", contacted - first)
    if dialect == "sqlite":
        return (func.julianday(contacted) - func.julianday(first)) * 86400.0
    return func.timestampdiff(literal_column("SECOND"), first, contacted)


async def response_buckets(
    conn: AsyncConnection, campaign_id: str | None, start: datetime, end: datetime
) -> list[ResponseBucket]:
    """Leads per campaign, rep (``assigned_to``) and first-contact time bucket (:class:`ResponseBucket`)."""
    seconds = _seconds_to_contact(conn.dialect.name)
    bucket = case(
        (leads.c.contacted_at.is_(None), case((leads.c.status == "closed_lost", LOST), else_=WAITING)),
        (seconds < 7200, func.round(seconds / 60.0)),
        (seconds < 86400, func.round(seconds / 900.0) * 15),
        else_=func.round(seconds / 3600.0) * 60,
    ).label("minutes")
    query = (
        select(leads.c.campaign_id, leads.c.assigned_to, bucket, func.count().label("leads"))
        .where(*_in_period(campaign_id, start, end))
        .group_by(leads.c.campaign_id, leads.c.assigned_to, bucket)
    )
    return [
        ResponseBucket(r.campaign_id, r.assigned_to, float(r.minutes), int(r.leads))
        for r in await conn.execute(query)
    ]


# --- stored daily sums (``rollup``) ----------------------------------------------------------------


async def analytics_version(conn: AsyncConnection, campaign_id: str) -> int | None:
    query = select(state.c.version).where(state.c.campaign_id == campaign_id)
    version = (await conn.execute(query)).scalar()
    return None if version is None else int(version)


async def stored_days(conn: AsyncConnection, campaign_id: str, first: date, last: date) -> set[date]:
    query = select(days_t.c.day).where(
        days_t.c.campaign_id == campaign_id, days_t.c.day >= first, days_t.c.day <= last
    )
    return {as_date(r[0]) for r in await conn.execute(query)}


async def stored_groups(conn: AsyncConnection, campaign_id: str, first: date, last: date) -> list[Group]:
    """The stored sums of the days [first, last], added up by source and utm_content."""
    query = (
        select(
            daily.c.source,
            daily.c.utm_content,
            func.sum(daily.c.total).label("total"),
            func.sum(daily.c.qualified).label("qualified"),
            func.sum(daily.c.score_sum).label("score_sum"),
            func.sum(daily.c.revenue).label("revenue"),
        )
        .where(daily.c.campaign_id == campaign_id, daily.c.day >= first, daily.c.day <= last)
        .group_by(daily.c.source, daily.c.utm_content)
    )
    return [_group(r) for r in await conn.execute(query)]


async def claim_version(conn: AsyncConnection, campaign_id: str, version: int) -> bool:
    """Take the write lock on the campaign's version row if it still is ``version`` (a no-op update:
    on SQLite it takes the database write lock), so no invalidation commits between check and insert."""
    unchanged = await conn.execute(
        update(state)
        .where(state.c.campaign_id == campaign_id, state.c.version == version)
        .values(version=state.c.version)
    )
    return unchanged.rowcount == 1


async def store_days(conn: AsyncConnection, campaign_id: str, computed: dict[date, list[Group]]) -> None:
    """The computed days' markers and sums."""
    await conn.execute(insert(days_t), [{"campaign_id": campaign_id, "day": d} for d in computed])
    rows = [
        {
            "campaign_id": campaign_id,
            "day": day,
            "source": g.source,
            "utm_content": g.utm_content,
            "total": g.total,
            "qualified": g.qualified,
            "score_sum": g.score_sum,
            "revenue": g.revenue,
        }
        for day, per_day in computed.items()
        for g in per_day
    ]
    if rows:
        await conn.execute(insert(daily), rows)


async def bump_version(conn: AsyncConnection, campaign_id: str) -> None:
    await conn.execute(
        update(state).where(state.c.campaign_id == campaign_id).values(version=state.c.version + 1)
    )


async def forget_days(conn: AsyncConnection, campaign_id: str, days: Iterable[date] | None = None) -> None:
    """Delete the stored markers and sums of these days of the campaign (all of them: ``None``)."""
    marker = days_t.c.campaign_id == campaign_id
    sums = daily.c.campaign_id == campaign_id
    if days is not None:
        wanted = list(days)
        marker, sums = marker & days_t.c.day.in_(wanted), sums & daily.c.day.in_(wanted)
    await conn.execute(delete(days_t).where(marker))
    await conn.execute(delete(daily).where(sums))


async def track(conn: AsyncConnection, campaign_id: str) -> None:
    await conn.execute(insert(state).values(campaign_id=campaign_id, version=0))


async def untrack(conn: AsyncConnection, campaign_id: str) -> None:
    await conn.execute(delete(state).where(state.c.campaign_id == campaign_id))
