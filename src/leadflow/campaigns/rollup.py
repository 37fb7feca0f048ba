"""Materialised daily analytics: a closed day of a campaign is summed once, stored, and invalidated on write.

Campaign analytics sum the leads of a period by source and ``utm_content``. Scanning 100 000 leads
takes tens of milliseconds per request, and several dashboards asking for different periods at once
queue behind each other; so the sums of *closed* days (UTC, ended over ten minutes ago) are stored per day in
``analytics_daily`` with a marker row in ``analytics_days``, and a request adds up stored days, computes
the missing closed days once (and stores them), and scans only today live (and yesterday until 00:10).

Correctness rests on two rules:

* every write that changes an analytics input of a lead in a closed day — status, qualification,
  score, deal value, deletion, a back-dated insert — calls :func:`invalidate` (or
  :func:`invalidate_campaign`) in its own transaction: it bumps ``analytics_state.version`` and deletes
  the day's marker and sums;
* a request stores what it computed only if the campaign's version is still the one it read before
  computing (``SELECT … FOR UPDATE`` on PostgreSQL/MySQL; on SQLite a write after a concurrent
  commit fails and the sums are simply not stored). So a sum computed from data that changed meanwhile
  is never kept, and the answer itself is always computed from current rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns.models import AnalyticsDaily, AnalyticsDay, AnalyticsState
from leadflow.campaigns.repository import analytics_groups, first_lead_at
from leadflow.kit.clock import utcnow
from leadflow.kit.models import table_of
from leadflow.leads.models import Lead

log = structlog.get_logger("leadflow.analytics")

days_t = table_of(AnalyticsDay)
daily = table_of(AnalyticsDaily)
state = table_of(AnalyticsState)
leads = table_of(Lead)

# A day is closed (and may be stored) once it ended this long ago: captures are committed within
# moments of their timestamp, so none can still land in it. Until then it is summed live, like today.
GRACE = timedelta(minutes=10)


@dataclass(slots=True)
class Group:
    """The sums for one source and ``utm_content`` (what ``repository.analytics_groups`` returns)."""

    source: str
    utm_content: str | None
    total: int
    qualified: int
    score_sum: int
    revenue: Decimal


def _bounds(first: date, last: date) -> tuple[datetime, datetime]:
    return (
        datetime.combine(first, time.min, tzinfo=UTC),
        datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC),
    )


def _group(row: Any) -> Group:
    return Group(
        source=row.source,
        utm_content=row.utm_content,
        total=int(row.total or 0),
        qualified=int(row.qualified or 0),
        score_sum=int(row.score_sum or 0),
        revenue=Decimal(row.revenue or 0),
    )


def last_closed_day(now: datetime) -> date:
    return (now - GRACE).date() - timedelta(days=1)


async def groups(conn: AsyncConnection, campaign_id: str, first: date, last: date) -> list[Group]:
    """The campaign's sums over the days [first, last] (UTC), by source and utm_content."""
    earliest = await first_lead_at(conn, campaign_id)  # an index seek (idx_campaign)
    if earliest is None:
        return []
    first = max(first, _day(earliest))  # days before the first lead are empty: nothing to sum or store
    if last < first:
        return []
    closed = last_closed_day(utcnow())
    found: list[Group] = []
    live_from = first
    if first <= closed:
        through = min(last, closed)
        found += await _closed_days(conn, campaign_id, first, through)
        live_from = through + timedelta(days=1)
    if live_from <= last:
        found += [_group(r) for r in await analytics_groups(conn, campaign_id, *_bounds(live_from, last))]
    return found


async def groups_between(
    conn: AsyncConnection, campaign_id: str, start: datetime, end: datetime
) -> list[Group]:
    """The campaign's sums over [start, end) (aware datetimes): whole UTC days through :func:`groups`
    (stored sums), any other span (a day in another time zone) by one live scan."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    midnight = time.min
    if start.timetz().replace(tzinfo=None) == midnight and end.timetz().replace(tzinfo=None) == midnight:
        if end <= start:
            return []
        return await groups(conn, campaign_id, start.date(), end.date() - timedelta(days=1))
    return [_group(r) for r in await analytics_groups(conn, campaign_id, start, end)]


async def _closed_days(conn: AsyncConnection, campaign_id: str, first: date, last: date) -> list[Group]:
    version = (await conn.execute(select(state.c.version).where(state.c.campaign_id == campaign_id))).scalar()
    have = {
        _as_date(r[0])
        for r in await conn.execute(
            select(days_t.c.day).where(
                days_t.c.campaign_id == campaign_id, days_t.c.day >= first, days_t.c.day <= last
            )
        )
    }
    span = (last - first).days + 1
    missing = [d for d in (first + timedelta(days=i) for i in range(span)) if d not in have]
    found: list[Group] = []
    if have:
        stored = select(
            daily.c.source,
            daily.c.utm_content,
            func.sum(daily.c.total).label("total"),
            func.sum(daily.c.qualified).label("qualified"),
            func.sum(daily.c.score_sum).label("score_sum"),
            func.sum(daily.c.revenue).label("revenue"),
        ).where(daily.c.campaign_id == campaign_id, daily.c.day >= first, daily.c.day <= last)
        found += [_group(r) for r in await conn.execute(stored.group_by(daily.c.source, daily.c.utm_content))]
    if missing:
        computed = await _compute(conn, campaign_id, missing)
        for per_day in computed.values():
            found += per_day
        if version is not None:
            await _store(conn, campaign_id, int(version), computed)
    return found


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _day_of(dialect: str, column: Any) -> Any:
    """The UTC calendar day of a stored timestamp, in SQL (each backend stores UTC its own way)."""
    if dialect == "postgresql":
        return func.date(func.timezone("UTC", column))
    if dialect == "sqlite":
        return func.substr(column, 1, 10)  # 'YYYY-MM-DD HH:MM:SS.ffffff', UTC
    return func.date(column)  # MySQL DATETIME(6), UTC


async def _compute(
    conn: AsyncConnection, campaign_id: str, missing: Sequence[date]
) -> dict[date, list[Group]]:
    """Per missing day, its sums: one grouped index range scan per run of consecutive days."""
    computed: dict[date, list[Group]] = {d: [] for d in missing}
    day = _day_of(conn.dialect.name, leads.c.created_at)
    for first, last in _runs(missing):
        for row in await analytics_groups(conn, campaign_id, *_bounds(first, last), per_day=day):
            computed[_as_date(row.day)].append(_group(row))
    return computed


def _runs(days: Sequence[date]) -> list[tuple[date, date]]:
    """Consecutive days merged into (first, last) ranges."""
    runs: list[tuple[date, date]] = []
    for day in sorted(days):
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


async def _store(
    conn: AsyncConnection, campaign_id: str, version: int, computed: dict[date, list[Group]]
) -> None:
    """Keep the computed days, unless an invalidation came in meanwhile (then the next request computes).

    The sums were read in the caller's (read) transaction; they are written in a new, short one, so
    a long read on SQLite does not have to be upgraded to a write after other commits (which SQLite
    refuses). ``version`` was read before the sums, so an unchanged version means no write to these
    days has committed since.
    """
    await conn.commit()
    try:
        # A no-op update that only matches the version read before computing: it takes the row (or, on
        # SQLite, the database) write lock first, so no invalidation can commit between check and insert.
        unchanged = await conn.execute(
            update(state)
            .where(state.c.campaign_id == campaign_id, state.c.version == version)
            .values(version=state.c.version)
        )
        if unchanged.rowcount != 1:
            await conn.rollback()
            return
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
        await conn.commit()
    except (IntegrityError, DBAPIError) as exc:
        # Another request stored the same days first, or (SQLite) somebody wrote since we read.
        await conn.rollback()
        log.info("analytics_rollup_not_stored", campaign_id=campaign_id, exc_type=type(exc).__name__)


# --- invalidation (called by every write that changes an analytics input) ----------------------------


async def invalidate(
    conn: AsyncConnection, days_by_campaign: Mapping[str, Iterable[date | datetime]]
) -> None:
    """Forget the stored sums of these days (a lead of theirs changed, appeared or was deleted).

    Today is never stored and is skipped (invalidating it would make every busy worker batch throw
    away the sums requests are computing); yesterday may be stored from 00:10 and is invalidated.
    """
    newest = utcnow().date() - timedelta(days=1)
    for campaign_id in sorted(days_by_campaign):  # one lock order for every writer: no deadlocks
        values = days_by_campaign[campaign_id]
        old = sorted({d for d in (_day(v) for v in values) if d <= newest})
        if old:
            await _bump(conn, campaign_id)
            await conn.execute(
                delete(days_t).where(days_t.c.campaign_id == campaign_id, days_t.c.day.in_(old))
            )
            await conn.execute(delete(daily).where(daily.c.campaign_id == campaign_id, daily.c.day.in_(old)))


async def invalidate_campaign(conn: AsyncConnection, campaign_id: str) -> None:
    """Forget every stored day of the campaign (bulk writes: seeding, retention, erasure)."""
    await _bump(conn, campaign_id)
    await conn.execute(delete(days_t).where(days_t.c.campaign_id == campaign_id))
    await conn.execute(delete(daily).where(daily.c.campaign_id == campaign_id))


async def track(conn: AsyncConnection, campaign_id: str) -> None:
    """Start tracking a new campaign (its version row must exist before anything is stored)."""
    await conn.execute(insert(state).values(campaign_id=campaign_id, version=0))


async def forget(conn: AsyncConnection, campaign_id: str) -> None:
    """A deleted campaign: drop its stored sums and version."""
    await invalidate_campaign(conn, campaign_id)
    await conn.execute(delete(state).where(state.c.campaign_id == campaign_id))


async def _bump(conn: AsyncConnection, campaign_id: str) -> None:
    await conn.execute(
        update(state).where(state.c.campaign_id == campaign_id).values(version=state.c.version + 1)
    )


def _day(value: date | datetime) -> date:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).date()
    return value
