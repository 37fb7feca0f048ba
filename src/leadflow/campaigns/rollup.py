"""Materialised analytics: closed slots of a campaign are summed once, stored, and invalidated on write.

Campaign analytics (the per-campaign API, the reports, the analytics dashboard) add up the leads of a
period: totals (leads, qualified, won, score, revenue) per campaign and day, and leads per channel,
source, grade, status, ``utm_content`` and rep and first-contact time. Scanning a million leads on
every request is far too slow, so the sums are stored per *slot* in ``analytics_days`` (one row per
slot with its totals and its leads per facet value, JSON). A slot is a closed UTC day (one that ended
over ``GRACE`` ago); on a day not closed yet, a closed hour; in an hour not closed yet, a closed ten
minutes. A request reads the stored slots of its period (one range read), computes the missing closed
slots (one grouped index-only scan per run of days, and one by ten minutes over the recent part that
also gives the live part) and stores them, and scans the rest live: the last 10 to 20 minutes of leads.
The ``analytics.rollup`` worker job (``campaigns/tasks.py``) stores missing slots of the last
``JOB_DAYS`` days every few minutes, so requests rarely compute anything but the live part.

Correctness rests on two rules:

* every write that changes an analytics input of a lead (``leads.changes.ANALYTICS_INPUTS``), deletes
  a lead or inserts one back-dated calls :func:`invalidate` (or :func:`invalidate_campaign`) in its own
  transaction: it bumps ``analytics_state.version`` and deletes the lead's day, hour and ten minutes (a slot
  that has not ended yet cannot be stored, and is skipped);
* sums are stored only if the campaign's version is still the one read before computing them (a no-op
  ``UPDATE`` that matches only that version takes the row's — on SQLite the database's — write lock
  first, and the slots are checked again under it). So a sum computed from data that changed meanwhile
  is never kept, and the answer itself is always computed from current rows.

A slot is one row, so it is in an answer wholly or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns import repository as repo
from leadflow.campaigns.repository import TENTHS, WHOLE_DAY, SlotKey, SlotSums, Totals
from leadflow.kit.clock import utcnow

__all__ = [
    "Sums",
    "Totals",
    "forget",
    "invalidate",
    "invalidate_campaign",
    "materialise",
    "store",
    "sums",
    "sums_between",
    "track",
]

log = structlog.get_logger("leadflow.analytics")

# A slot is closed (and may be stored) once it ended this long ago: captures are committed within
# moments of their timestamp, so none can still land in it. Until then it is summed live.
GRACE = timedelta(minutes=10)
HOUR = timedelta(hours=1)
TEN_MINUTES = timedelta(minutes=10)
# How far back the periodic job keeps every closed day stored.
JOB_DAYS = 90

FacetTotals = dict[tuple[str, str, str | None, int], list[int]]  # (campaign, facet, value, minutes)
Computed = dict[str, dict[tuple[date, int], SlotSums]]  # campaign → (day, part) → sums


@dataclass(slots=True)
class Sums:
    """The analytics sums of some campaigns over a period: totals per campaign and day, and leads
    (with qualified leads) per campaign, facet, value and minutes. Adding slots in any order or
    grouping gives the same sums: that is what lets stored slots stand in for a scan."""

    days: dict[tuple[str, date], Totals] = field(default_factory=dict)
    facets: FacetTotals = field(default_factory=dict)

    def add_totals(self, campaign_id: str, day: date, totals: Totals) -> None:
        have = self.days.get((campaign_id, day))
        if have is None:
            self.days[(campaign_id, day)] = have = Totals()
        have.add(totals)

    def add_facet(self, key: tuple[str, str, str | None, int], leads: int, qualified: int) -> None:
        repo.count_into(self.facets, key, leads, qualified)

    def add_slot(self, key: SlotKey, slot: SlotSums) -> None:
        campaign_id = key[0]
        self.add_totals(campaign_id, key[1], slot.totals)
        for (facet, value, minutes), (leads, qualified) in slot.facets.items():
            self.add_facet((campaign_id, facet, value, minutes), leads, qualified)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def last_closed_day(now: datetime) -> date:
    return (now - GRACE).date() - timedelta(days=1)


def _floor(when: datetime, minutes: int) -> datetime:
    return when.replace(minute=when.minute - when.minute % minutes, second=0, microsecond=0)


def live_from(now: datetime) -> datetime:
    """The start of the first ten minutes that are not closed: the live part starts here."""
    return _floor(now - GRACE, 10)


def bounds(day: date, part: int) -> tuple[datetime, datetime]:
    """[start, end) of a slot (``part``: see ``repository.WHOLE_DAY`` and ``TENTHS``)."""
    start = midnight(day)
    if part == WHOLE_DAY:
        return start, start + timedelta(days=1)
    if part < WHOLE_DAY:
        start += timedelta(hours=part)
        return start, start + HOUR
    hour, tenth = divmod(part - TENTHS, 6)
    start += timedelta(hours=hour, minutes=10 * tenth)
    return start, start + TEN_MINUTES


def expected_slots(first: date, last: date, now: datetime) -> list[tuple[date, int]]:
    """The closed slots that cover the days [first, last] (UTC): whole closed days; on the other days
    the closed hours, then the closed ten minutes of the hour that is not closed yet."""
    closed, hours_end, tenths_end = last_closed_day(now), _floor(now - GRACE, 60), live_from(now)
    slots: list[tuple[date, int]] = []
    day = first
    while day <= last:
        if day <= closed:
            slots.append((day, WHOLE_DAY))
        else:
            for hour in range(24):
                if bounds(day, hour)[1] <= hours_end:
                    slots.append((day, hour))
                    continue
                for tenth in range(TENTHS + 6 * hour, TENTHS + 6 * hour + 6):
                    if bounds(day, tenth)[1] <= tenths_end:
                        slots.append((day, tenth))
        day += timedelta(days=1)
    return slots


async def sums(
    conn: AsyncConnection,
    campaign_ids: Sequence[str],
    first: date,
    last: date,
    *,
    scope: str | None = None,
) -> Sums:
    """The sums of the campaigns' leads over the days [first, last] (UTC): stored closed slots, the
    missing closed slots computed (and stored), and the open hours scanned live.

    ``scope``: the one campaign asked for (``campaign_ids`` is then ``[scope]``), or ``None`` for every
    campaign (``campaign_ids`` lists them all).
    """
    if last < first or not campaign_ids:
        return Sums()
    if len(campaign_ids) == 1:  # days before the campaign's first lead are empty: not even looked at
        earliest = await repo.first_lead_at(conn, campaign_ids[0])  # an index seek (idx_campaign)
        if earliest is None:
            return Sums()
        first = max(
            first, (earliest if earliest.tzinfo else earliest.replace(tzinfo=UTC)).astimezone(UTC).date()
        )
        if last < first:
            return Sums()
    now = utcnow()
    found, computed, versions = await _gather(conn, campaign_ids, first, last, now, scope=scope, live=True)
    if computed:
        await conn.commit()  # end the read; store in a new, short transaction
        try:
            await store(conn, versions, computed)
            await conn.commit()
        except (IntegrityError, DBAPIError) as exc:
            # SQLite: somebody wrote since we read (the claim would have waited); the next one stores.
            await conn.rollback()
            log.info("analytics_rollup_not_stored", exc_type=type(exc).__name__)
    return found


async def sums_between(conn: AsyncConnection, campaign_id: str, start: datetime, end: datetime) -> Sums:
    """The campaign's sums over [start, end) (aware datetimes): whole UTC days through :func:`sums`
    (stored slots), any other span (a day in another time zone) by one live scan."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return Sums()
    if start.timetz().replace(tzinfo=None) == time.min and end.timetz().replace(tzinfo=None) == time.min:
        return await sums(
            conn, [campaign_id], start.date(), end.date() - timedelta(days=1), scope=campaign_id
        )
    found = Sums()
    for key, slot in (await repo.scan(conn, [campaign_id], start, end, grain="day")).items():
        found.add_slot(key, slot)
    return found


async def materialise(
    conn: AsyncConnection, campaign_ids: Sequence[str], days: int = JOB_DAYS
) -> tuple[dict[str, int], Computed]:
    """The closed slots of the last ``days`` days missing from the store, computed (not stored: hand
    them to :func:`store` in a write transaction). Cheap when nothing is missing: one read of the slot
    rows, no facets, no scan."""
    now = utcnow()
    today = now.date()
    _, computed, versions = await _gather(
        conn, campaign_ids, today - timedelta(days=days - 1), today, now, scope=None, live=False
    )
    return versions, computed


async def _gather(
    conn: AsyncConnection,
    campaign_ids: Sequence[str],
    first: date,
    last: date,
    now: datetime,
    *,
    scope: str | None,
    live: bool,
) -> tuple[Sums, Computed, dict[str, int]]:
    """The sums (with ``live``: of the whole period, open hours included; else of what is stored and
    computed only), the missing closed slots computed, and the versions read before computing them."""
    period_end = midnight(last + timedelta(days=1))
    expected = expected_slots(first, last, now)
    wanted = set(expected)
    versions = await repo.analytics_versions(conn, campaign_ids)  # before any sum is read
    found = Sums()
    stored_keys: set[SlotKey] = set()
    for key, totals, slot_facets in await repo.stored(conn, scope, first, last):
        campaign_id, day, part = key
        if (day, part) not in wanted:  # smaller slots of a day or hour since closed, replaced when it is
            continue
        stored_keys.add(key)
        if not live:
            continue
        found.add_totals(campaign_id, day, totals)
        for facet, value, minutes, leads, qualified in zip(*slot_facets, strict=True):
            found.add_facet((campaign_id, facet, value, minutes), leads, qualified)

    missing: dict[str, list[tuple[date, int]]] = {}
    for campaign_id in campaign_ids:
        gaps = [s for s in expected if (campaign_id, *s) not in stored_keys]
        if gaps:
            missing[campaign_id] = gaps
    if missing:  # slots before a campaign's first lead are empty: nothing to sum or store
        firsts = await repo.first_leads_at(conn, sorted(missing))
        for campaign_id in list(missing):
            earliest = firsts.get(campaign_id)
            kept = [s for s in missing[campaign_id] if earliest is not None and bounds(*s)[1] > earliest]
            if kept:
                missing[campaign_id] = kept
            else:
                del missing[campaign_id]

    computed: Computed = {c: {s: SlotSums() for s in slots} for c, slots in missing.items()}
    # Whole days: one scan per run of consecutive missing days, of the campaigns missing any of them.
    missing_days = {s[0] for slots in missing.values() for s in slots if s[1] == WHOLE_DAY}
    for run_first, run_last in _runs(sorted(missing_days)):
        who = sorted(
            c
            for c, slots in missing.items()
            if any(run_first <= d <= run_last for d, part in slots if part == WHOLE_DAY)
        )
        end = midnight(run_last + timedelta(days=1))
        for key, slot in (await repo.scan(conn, who, midnight(run_first), end, grain="day")).items():
            target = computed.get(key[0], {})
            if (key[1], key[2]) in target:
                target[(key[1], key[2])] = slot
    # Hours and ten minutes: one scan by ten minutes from the first missing one (or the live part) to
    # the end of the period; it gives the missing closed hours and ten minutes and the live part at once.
    live_start = max(live_from(now), midnight(first))
    starts = [bounds(*s)[0] for slots in missing.values() for s in slots if s[1] != WHOLE_DAY]
    if live and live_start < period_end:
        starts.append(live_start)
    if starts:
        who = (
            list(campaign_ids)
            if live
            else sorted(c for c, slots in missing.items() if any(part != WHOLE_DAY for _, part in slots))
        )
        scanned = await repo.scan(conn, who, min(starts), period_end, grain="tenth")
        for (campaign_id, day, tenth), slot in scanned.items():
            target = computed.get(campaign_id, {})
            hour = (tenth - TENTHS) // 6
            if (day, hour) in target:
                target[(day, hour)].add(slot)
            elif (day, tenth) in target:
                target[(day, tenth)] = slot
            elif live and bounds(day, tenth)[0] >= live_start:
                found.add_slot((campaign_id, day, tenth), slot)
    for campaign_id, slots in computed.items():
        for (day, part), slot in slots.items():
            found.add_slot((campaign_id, day, part), slot)
    return found, computed, versions


def _runs(days: Sequence[date]) -> list[tuple[date, date]]:
    """Consecutive days merged into (first, last) ranges."""
    runs: list[tuple[date, date]] = []
    for day in sorted(days):
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


async def store(conn: AsyncConnection, versions: Mapping[str, int], computed: Computed) -> int:
    """Keep the computed slots in the caller's (write) transaction, campaign by campaign, unless an
    invalidation came in since ``versions`` were read (then the next request or job computes them).

    ``versions`` were read before the sums, so an unchanged version means no write to these slots has
    committed since. The claim (a no-op update matching only that version) takes the version row's
    write lock (on SQLite the database's) first, so no invalidation can commit between check and insert;
    slots somebody else stored meanwhile are left as they are. Returns the number of slots stored.
    """
    done = 0
    for campaign_id in sorted(computed):  # one lock order for every writer: no deadlocks
        version = versions.get(campaign_id)
        slots = computed[campaign_id]
        if version is None or not slots or not await repo.claim_version(conn, campaign_id, version):
            continue
        present = await repo.stored_slots(conn, campaign_id, {day for day, _ in slots})
        fresh = {s: v for s, v in slots.items() if s not in present}
        if fresh:
            await repo.store_slots(conn, campaign_id, fresh)
            done += len(fresh)
    return done


# --- invalidation (called by every write that changes an analytics input) ----------------------------


async def invalidate(
    conn: AsyncConnection, days_by_campaign: Mapping[str, Iterable[date | datetime]]
) -> None:
    """Forget the stored slots of these leads' creation times (a lead changed, appeared or was deleted):
    the day, hour and ten minutes each falls in; a date stands for the whole day.

    A slot that has not ended yet (the current ten minutes) is never stored and is skipped: the
    worker's changes to fresh leads cost nothing here. Any slot that has ended is invalidated, even
    within ``GRACE``, since a request may close it before this transaction commits.
    """
    now = utcnow()
    current = _floor(now, 10)
    for campaign_id in sorted(days_by_campaign):  # one lock order for every writer: no deadlocks
        days: set[date] = set()
        parts: set[int] | None = set()
        for value in days_by_campaign[campaign_id]:
            if isinstance(value, datetime):
                when = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
                if when >= current:
                    continue
                days.add(when.date())
                if parts is not None:
                    parts.update((when.hour, TENTHS + 6 * when.hour + when.minute // 10))
            elif value <= now.date():
                days.add(value)
                parts = None  # every part of the day
        if days:
            await repo.bump_version(conn, campaign_id)
            await repo.forget_slots(conn, campaign_id, days, parts)


async def invalidate_campaign(conn: AsyncConnection, campaign_id: str) -> None:
    """Forget every stored slot of the campaign (bulk writes: seeding, retention, erasure)."""
    await repo.bump_version(conn, campaign_id)
    await repo.forget_slots(conn, campaign_id)


async def track(conn: AsyncConnection, campaign_id: str) -> None:
    """Start tracking a new campaign (its version row must exist before anything is stored)."""
    await repo.track(conn, campaign_id)


async def forget(conn: AsyncConnection, campaign_id: str) -> None:
    """A deleted campaign: drop its stored slots and version."""
    await invalidate_campaign(conn, campaign_id)
    await repo.untrack(conn, campaign_id)
