"""SQL for campaigns and their analytics: the campaign rows, the grouped lead scan, and the stored
slots of ``rollup`` (``analytics_days``, ``analytics_state``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Literal

from sqlalchemy import (
    Date,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns.models import AnalyticsDay, AnalyticsState, Campaign
from leadflow.kit.models import AnyRow, columns_of, rows_as, table_of
from leadflow.leads.models import Lead

campaigns = table_of(Campaign)
leads = table_of(Lead)
days_t = table_of(AnalyticsDay)
state = table_of(AnalyticsState)


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


async def first_leads_at(conn: AsyncConnection, campaign_ids: Sequence[str]) -> dict[str, datetime]:
    """Each campaign's earliest lead (campaigns without leads left out): one statement of index seeks
    on ``idx_campaign`` (a grouped MIN would read the whole index)."""
    found: dict[str, datetime] = {}
    ids = list(campaign_ids)
    for chunk in (ids[i : i + 200] for i in range(0, len(ids), 200)):
        firsts = [
            select(func.min(leads.c.created_at)).where(leads.c.campaign_id == c).scalar_subquery()
            for c in chunk
        ]
        row = (await conn.execute(select(*firsts))).one()
        found.update({c: v for c, v in zip(chunk, row, strict=True) if isinstance(v, datetime)})
    return found


async def first_lead_at(conn: AsyncConnection, campaign_id: str) -> datetime | None:
    return (await first_leads_at(conn, [campaign_id])).get(campaign_id)


def as_date(value: Any) -> date:
    """A DATE column's value (SQLite returns text)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


# --- analytics sums: the scans of the leads, and the stored slots of ``rollup`` ----------------------

QUALIFIED = ("marketing_qualified", "sales_qualified", "customer")
# The ``part`` of the day a stored slot covers: an hour (0-23), the whole day, or a ten-minute slot
# (``TENTHS + 6 * hour + minute // 10``).
WHOLE_DAY = 24
TENTHS = 100
# First contact buckets (``minutes`` of a ``speed`` facet) of leads not contacted: waiting, or lost.
WAITING, LOST = -1, -2
FACETS = ("channel", "source", "grade", "status", "content", "speed")

Grain = Literal["day", "hour", "tenth"]
SlotKey = tuple[str, date, int]  # campaign, UTC day, part of the day
FacetKey = tuple[str, str | None, int]  # facet, value, minutes (0 but for ``speed``)


@dataclass(slots=True)
class Totals:
    """What adds up over the leads of a slot (or of a campaign's day)."""

    leads: int = 0
    qualified: int = 0
    won: int = 0
    score_sum: int = 0
    revenue: Decimal = Decimal(0)

    def add(self, other: Totals) -> None:
        self.leads += other.leads
        self.qualified += other.qualified
        self.won += other.won
        self.score_sum += other.score_sum
        self.revenue += other.revenue


@dataclass(slots=True)
class SlotSums:
    """The sums of one slot: totals, and leads (with qualified leads) per facet value."""

    totals: Totals = field(default_factory=Totals)
    facets: dict[FacetKey, list[int]] = field(default_factory=dict)

    def add(self, other: SlotSums) -> None:
        self.totals.add(other.totals)
        for key, (leads, qualified) in other.facets.items():
            self.count(key, leads, qualified)

    def count(self, key: FacetKey, leads: int, qualified: int = 0) -> None:
        count_into(self.facets, key, leads, qualified)


def count_into(counts: dict[Any, list[int]], key: Any, leads: int, qualified: int) -> None:
    """Add ``leads`` and ``qualified`` to ``counts[key]`` (a ``[leads, qualified]`` pair)."""
    have = counts.get(key)
    if have is None:
        counts[key] = [leads, qualified]
    else:
        have[0] += leads
        have[1] += qualified


def _slot_of(dialect: str, column: Any, grain: Grain) -> Any:
    """The UTC day ('YYYY-MM-DD'), hour ('YYYY-MM-DD HH') or ten minutes ('YYYY-MM-DD HH:M', the first
    digit of the minute) of a stored timestamp, as text in SQL."""
    length = {"day": 10, "hour": 13, "tenth": 15}[grain]
    if dialect == "postgresql":
        pattern: Any = literal_column("'YYYY-MM-DD HH24:MI'")
        return func.substr(func.to_char(func.timezone("UTC", column), pattern), 1, length)
    if dialect == "sqlite":
        return func.substr(column, 1, length)  # 'YYYY-MM-DD HH:MM:SS.ffffff', UTC
    return func.substr(func.date_format(column, "%Y-%m-%d %H:%i"), 1, length)  # MySQL DATETIME(6), UTC


def part_of(text_slot: str, grain: Grain) -> tuple[date, int]:
    """The (day, part) of a slot as :func:`_slot_of` gives it."""
    day = date.fromisoformat(text_slot[:10])
    if grain == "day":
        return day, WHOLE_DAY
    if grain == "hour":
        return day, int(text_slot[11:13])
    return day, TENTHS + 6 * int(text_slot[11:13]) + int(text_slot[14])


def _seconds_to_contact(dialect: str) -> Any:
    """``contacted_at - created_at`` in seconds, in SQL (each backend its own way)."""
    first, contacted = leads.c.created_at, leads.c.contacted_at
    if dialect == "postgresql":
        return func.extract("epoch", contacted - first)
    if dialect == "sqlite":
        return (func.julianday(contacted) - func.julianday(first)) * 86400.0
    return func.timestampdiff(literal_column("SECOND"), first, contacted)


def _minutes_bucket(dialect: str) -> Any:
    """Capture to first contact, in minutes rounded to the minute (under 2 h), 15 minutes (under a
    day) or the hour; ``WAITING`` not contacted yet, ``LOST`` lost without contact."""
    seconds = _seconds_to_contact(dialect)
    return case(
        (
            leads.c.contacted_at.is_(None),
            case(
                (leads.c.status == "closed_lost", literal_column(str(LOST))),
                else_=literal_column(str(WAITING)),
            ),
        ),
        (seconds < 7200, func.round(seconds / 60.0)),
        (seconds < 86400, func.round(seconds / 900.0) * 15),
        else_=func.round(seconds / 3600.0) * 60,
    )


@cache
def _scan_query(dialect: str, grain: Grain) -> Any:
    """The statement of :func:`scan` (built once per backend: building and keying it took longer than
    running it on a small range)."""
    slot = _slot_of(dialect, leads.c.created_at, grain).label("slot")
    minutes = _minutes_bucket(dialect).label("minutes")
    qualified = case((leads.c.qualification_status.in_(QUALIFIED), 1), else_=0)
    won_value = case((leads.c.status == "closed_won", leads.c.deal_value), else_=None)
    keys = [
        leads.c.campaign_id,
        slot,
        leads.c.channel,
        leads.c.source,
        leads.c.lead_grade,
        leads.c.status,
        leads.c.utm_content,
        leads.c.assigned_to,
        minutes,
    ]
    return (
        select(
            *keys,
            func.count().label("n"),
            func.sum(qualified).label("qualified"),
            func.sum(leads.c.lead_score).label("score_sum"),
            func.sum(won_value).label("revenue"),
        )
        .where(
            leads.c.campaign_id.in_(bindparam("ids", expanding=True)),
            leads.c.created_at >= bindparam("start", type_=leads.c.created_at.type),
            leads.c.created_at < bindparam("end", type_=leads.c.created_at.type),
        )
        .group_by(*keys)
    )


async def scan(
    conn: AsyncConnection, campaign_ids: Sequence[str], start: datetime, end: datetime, *, grain: Grain
) -> dict[SlotKey, SlotSums]:
    """The sums of the campaigns' leads created in [start, end), per UTC day, hour or ten minutes
    (``grain``), in one grouped index-only range scan of ``idx_analytics`` (one range per campaign).
    Slots without leads are absent."""
    if not campaign_ids:
        return {}
    query = _scan_query(conn.dialect.name, grain)
    params = {"ids": list(campaign_ids), "start": start, "end": end}
    found: dict[SlotKey, SlotSums] = {}
    rows = await conn.execute(query, params)
    for (
        campaign_id,
        slot,
        channel,
        source,
        grade,
        status,
        content,
        rep,
        minutes,
        n,
        q,
        score,
        revenue,
    ) in rows:
        key = (campaign_id, *part_of(str(slot), grain))
        sums = found.get(key)
        if sums is None:
            sums = found[key] = SlotSums()
        n, q = int(n), int(q or 0)
        t = sums.totals
        t.leads += n
        t.qualified += q
        t.score_sum += int(score or 0)
        if status == "closed_won":
            t.won += n
            t.revenue += Decimal(revenue or 0)
        count = sums.count
        count(("channel", channel, 0), n)
        count(("source", source, 0), n, q)
        count(("grade", grade, 0), n)
        count(("status", status, 0), n)
        if content is not None:
            count(("content", content, 0), n, q)
        count(("speed", rep, int(float(minutes))), n)
    return found


# A stored slot: its key, totals and facets (five parallel lists: facet, value, minutes, leads, qualified).
StoredSlot = tuple[SlotKey, Totals, list[list[Any]]]


@cache
def _stored_query(one_campaign: bool) -> Any:
    """The statement of :func:`stored` (built once)."""
    where = [
        days_t.c.day >= bindparam("first", type_=Date()),
        days_t.c.day <= bindparam("last", type_=Date()),
    ]
    if one_campaign:
        where.append(days_t.c.campaign_id == bindparam("campaign_id"))
    return select(
        days_t.c.campaign_id,
        days_t.c.day,
        days_t.c.part,
        days_t.c.leads,
        days_t.c.qualified,
        days_t.c.won,
        days_t.c.score_sum,
        days_t.c.revenue,
        days_t.c.facets,
    ).where(*where)


async def stored(conn: AsyncConnection, campaign_id: str | None, first: date, last: date) -> list[StoredSlot]:
    """The stored slots (whole days and hours) of the days [first, last]: one row each, so a slot stored
    or dropped meanwhile is wholly in the answer or not at all."""
    params: dict[str, Any] = {"first": first, "last": last}
    if campaign_id is not None:
        params["campaign_id"] = campaign_id
    return [
        (
            (campaign, as_date(day), int(part)),
            Totals(int(n), int(q), int(won), int(score), Decimal(revenue or 0)),
            facets or [[], [], [], [], []],
        )
        for campaign, day, part, n, q, won, score, revenue, facets in await conn.execute(
            _stored_query(campaign_id is not None), params
        )
    ]


async def analytics_versions(conn: AsyncConnection, campaign_ids: Sequence[str]) -> dict[str, int]:
    query = select(state.c.campaign_id, state.c.version).where(state.c.campaign_id.in_(list(campaign_ids)))
    return {r.campaign_id: int(r.version) for r in await conn.execute(query)}


async def claim_version(conn: AsyncConnection, campaign_id: str, version: int) -> bool:
    """Take the write lock on the campaign's version row if it still is ``version`` (a no-op update:
    on SQLite it takes the database write lock), so no invalidation commits between check and insert."""
    unchanged = await conn.execute(
        update(state)
        .where(state.c.campaign_id == campaign_id, state.c.version == version)
        .values(version=state.c.version)
    )
    return unchanged.rowcount == 1


async def stored_slots(
    conn: AsyncConnection, campaign_id: str, days: Iterable[date]
) -> set[tuple[date, int]]:
    """The campaign's stored slots on these days, read with a lock (the latest committed rows)."""
    query = (
        select(days_t.c.day, days_t.c.part)
        .where(days_t.c.campaign_id == campaign_id, days_t.c.day.in_(sorted(set(days))))
        .with_for_update()
    )
    return {(as_date(r.day), int(r.part)) for r in await conn.execute(query)}


async def store_slots(
    conn: AsyncConnection, campaign_id: str, computed: dict[tuple[date, int], SlotSums]
) -> None:
    """The computed slots' rows; a whole day replaces the smaller slots stored of it, an hour its ten
    minutes."""
    whole = sorted(day for day, part in computed if part == WHOLE_DAY)
    if whole:
        await conn.execute(
            delete(days_t).where(
                days_t.c.campaign_id == campaign_id, days_t.c.day.in_(whole), days_t.c.part != WHOLE_DAY
            )
        )
    for day, part in computed:
        if part < WHOLE_DAY:
            tenths = [TENTHS + 6 * part + k for k in range(6)]
            await conn.execute(
                delete(days_t).where(
                    days_t.c.campaign_id == campaign_id, days_t.c.day == day, days_t.c.part.in_(tenths)
                )
            )
    await conn.execute(
        insert(days_t),
        [
            {
                "campaign_id": campaign_id,
                "day": day,
                "part": part,
                "leads": s.totals.leads,
                "qualified": s.totals.qualified,
                "won": s.totals.won,
                "score_sum": s.totals.score_sum,
                "revenue": s.totals.revenue,
                "facets": _columns(s.facets),
            }
            for (day, part), s in computed.items()
        ],
    )


def _columns(facets: dict[FacetKey, list[int]]) -> list[list[Any]]:
    """A slot's facets as five parallel lists (facet, value, minutes, leads, qualified): decoded in
    half the time of a list of entries."""
    keys, counts = list(facets), list(facets.values())
    return [
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [c[0] for c in counts],
        [c[1] for c in counts],
    ]


async def bump_version(conn: AsyncConnection, campaign_id: str) -> None:
    await conn.execute(
        update(state).where(state.c.campaign_id == campaign_id).values(version=state.c.version + 1)
    )


async def forget_slots(
    conn: AsyncConnection,
    campaign_id: str,
    days: Iterable[date] | None = None,
    parts: Iterable[int] | None = None,
) -> None:
    """Delete the campaign's stored slots of these days: the whole days and the ``parts`` (every part:
    ``None``; every slot of the campaign: ``days=None``)."""
    slot = days_t.c.campaign_id == campaign_id
    if days is not None:
        slot = slot & days_t.c.day.in_(sorted(set(days)))
        if parts is not None:
            slot = slot & days_t.c.part.in_(sorted({*parts, WHOLE_DAY}))
    await conn.execute(delete(days_t).where(slot))


async def track(conn: AsyncConnection, campaign_id: str) -> None:
    await conn.execute(insert(state).values(campaign_id=campaign_id, version=0))


async def untrack(conn: AsyncConnection, campaign_id: str) -> None:
    await conn.execute(delete(state).where(state.c.campaign_id == campaign_id))
