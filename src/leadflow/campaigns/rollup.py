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
from datetime import UTC, date, datetime, time, timedelta

import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns import repository as repo
from leadflow.campaigns.repository import Group
from leadflow.kit.clock import utcnow

__all__ = ["Group", "forget", "groups", "groups_between", "invalidate", "invalidate_campaign", "track"]

log = structlog.get_logger("leadflow.analytics")

# A day is closed (and may be stored) once it ended this long ago: captures are committed within
# moments of their timestamp, so none can still land in it. Until then it is summed live, like today.
GRACE = timedelta(minutes=10)


def _bounds(first: date, last: date) -> tuple[datetime, datetime]:
    return (
        datetime.combine(first, time.min, tzinfo=UTC),
        datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC),
    )


def last_closed_day(now: datetime) -> date:
    return (now - GRACE).date() - timedelta(days=1)


async def groups(conn: AsyncConnection, campaign_id: str, first: date, last: date) -> list[Group]:
    """The campaign's sums over the days [first, last] (UTC), by source and utm_content."""
    earliest = await repo.first_lead_at(conn, campaign_id)  # an index seek (idx_campaign)
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
        found += await repo.analytics_groups(conn, campaign_id, *_bounds(live_from, last))
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
    return await repo.analytics_groups(conn, campaign_id, start, end)


async def _closed_days(conn: AsyncConnection, campaign_id: str, first: date, last: date) -> list[Group]:
    version = await repo.analytics_version(conn, campaign_id)
    have = await repo.stored_days(conn, campaign_id, first, last)
    span = (last - first).days + 1
    missing = [d for d in (first + timedelta(days=i) for i in range(span)) if d not in have]
    found: list[Group] = []
    if have:
        found += await repo.stored_groups(conn, campaign_id, first, last)
    if missing:
        computed = await _compute(conn, campaign_id, missing)
        for per_day in computed.values():
            found += per_day
        if version is not None:
            await _store(conn, campaign_id, version, computed)
    return found


async def _compute(
    conn: AsyncConnection, campaign_id: str, missing: Sequence[date]
) -> dict[date, list[Group]]:
    """Per missing day, its sums: one grouped index range scan per run of consecutive days."""
    computed: dict[date, list[Group]] = {d: [] for d in missing}
    for first, last in _runs(missing):
        for day, group in await repo.analytics_groups_per_day(conn, campaign_id, *_bounds(first, last)):
            computed[day].append(group)
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
        if not await repo.claim_version(conn, campaign_id, version):
            await conn.rollback()
            return
        await repo.store_days(conn, campaign_id, computed)
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
            await repo.bump_version(conn, campaign_id)
            await repo.forget_days(conn, campaign_id, old)


async def invalidate_campaign(conn: AsyncConnection, campaign_id: str) -> None:
    """Forget every stored day of the campaign (bulk writes: seeding, retention, erasure)."""
    await repo.bump_version(conn, campaign_id)
    await repo.forget_days(conn, campaign_id)


async def track(conn: AsyncConnection, campaign_id: str) -> None:
    """Start tracking a new campaign (its version row must exist before anything is stored)."""
    await repo.track(conn, campaign_id)


async def forget(conn: AsyncConnection, campaign_id: str) -> None:
    """A deleted campaign: drop its stored sums and version."""
    await invalidate_campaign(conn, campaign_id)
    await repo.untrack(conn, campaign_id)


def _day(value: date | datetime) -> date:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).date()
    return value
