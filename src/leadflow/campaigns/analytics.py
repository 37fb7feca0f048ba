"""Campaign performance: stored sums of closed days plus a live scan of today and yesterday (``rollup``),
and the analytics dashboard (:func:`dashboard`: every figure of the analytics page, one campaign or all)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from time import monotonic

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadflow.campaigns import repository as repo
from leadflow.campaigns import rollup, stats
from leadflow.campaigns.repository import CampaignRow
from leadflow.campaigns.schemas import (
    AbTest,
    CampaignAnalytics,
    CampaignKpis,
    CampaignSpeed,
    ContentPerformance,
    Dashboard,
    DayCount,
    FunnelStage,
    Metrics,
    Period,
    RepSpeedOut,
    Speed,
    VariantOut,
)
from leadflow.campaigns.service import get_or_404
from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow

TOP_CONTENT = 5


def _ratio(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


async def campaign_analytics(
    conn: AsyncConnection, campaign_id: str, start: date | None, end: date | None
) -> CampaignAnalytics:
    campaign = await get_or_404(conn, campaign_id)
    today = utcnow().date()
    if end is None:
        end = today
    if start is None:
        first = await repo.first_lead_at(conn, campaign_id)
        candidates = [d for d in (campaign.start_date, first.date() if first else None) if d is not None]
        start = min(candidates) if candidates else end
    if end < start:
        raise ApiError(400, "VALIDATION_ERROR", "end is before start", field="end")
    return summarise(
        campaign, await rollup.sums(conn, [campaign_id], start, end, scope=campaign_id), start, end
    )


def summarise(campaign: CampaignRow, sums: rollup.Sums, start: date, end: date) -> CampaignAnalytics:
    """The campaign's figures from its sums (``rollup.sums``): the analytics API and the daily/weekly
    reports compute them here, so they cannot disagree."""
    totals = rollup.Totals()
    for (campaign_id, _), day in sums.days.items():
        if campaign_id == campaign.id:
            totals.add(day)
    total, qualified = totals.leads, totals.qualified
    sources: Counter[str] = Counter()
    content_total: Counter[str] = Counter()
    content_qualified: Counter[str] = Counter()
    for (campaign_id, facet, value, _), (leads, converted) in sums.facets.items():
        if campaign_id != campaign.id or value is None:
            continue
        if facet == "source":
            sources[value] += leads
        elif facet == "content":
            content_total[value] += leads
            content_qualified[value] += converted

    budget = float(campaign.budget) if campaign.budget is not None else 0.0
    ranked = sorted(
        content_total,
        key=lambda c: (-content_total[c], -_ratio(content_qualified[c], content_total[c]), c),
    )[:TOP_CONTENT]
    return CampaignAnalytics(
        campaign_id=campaign.id,
        period=Period(start=start, end=end),
        metrics=Metrics(
            total_leads=total,
            qualified_leads=qualified,
            conversion_rate=_ratio(qualified, total),
            average_lead_score=round(totals.score_sum / total, 1) if total else 0.0,
            cost_per_lead=round(budget / total, 2) if total else 0.0,
            revenue_generated=float(totals.revenue),
        ),
        lead_sources=dict(sorted(sources.items(), key=lambda kv: (-kv[1], kv[0]))),
        top_performing_content=[
            ContentPerformance(
                utm_content=c,
                leads=content_total[c],
                conversion_rate=_ratio(content_qualified[c], content_total[c]),
            )
            for c in ranked
        ],
    )


class AnalyticsCache:
    """Per-process cache of computed analytics, ``ttl`` seconds per (campaign, period).

    The spec lets campaign analytics follow new leads within its 30-second integration budget; a
    dashboard polling every few seconds then costs one grouped scan per period, not one per request.
    Status changes made through this process drop the campaign's entries at once.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, date | None, date | None], tuple[float, CampaignAnalytics]] = {}

    def get(self, key: tuple[str, date | None, date | None]) -> tuple[CampaignAnalytics, float] | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        age = monotonic() - hit[0]
        if age > self.ttl:
            del self._entries[key]
            return None
        return hit[1], age

    def put(self, key: tuple[str, date | None, date | None], value: CampaignAnalytics) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) > 1000:
            self._entries.clear()
        self._entries[key] = (monotonic(), value)

    async def get_or_compute(
        self, engine: AsyncEngine, campaign_id: str, start: date | None, end: date | None
    ) -> tuple[CampaignAnalytics, float]:
        """The analytics and their age in seconds: from the cache, else computed on a new connection."""
        key = (campaign_id, start, end)
        hit = self.get(key)
        if hit is not None:
            return hit
        async with engine.connect() as conn:
            body = await campaign_analytics(conn, campaign_id, start, end)
        self.put(key, body)
        return body, 0.0

    def invalidate(self, campaign_id: str) -> None:
        for key in [k for k in self._entries if k[0] == campaign_id]:
            self._entries.pop(key, None)


# --- the analytics dashboard -------------------------------------------------------------------------

DEFAULT_DAYS = 30
MAX_DAYS = 731
FUNNEL = ("new", "contacted", "qualified", "proposal", "won")
# How far each lead status got in the funnel (a lost lead counts where it is known to have been: new).
_STAGE_OF = {"new": 0, "contacted": 1, "qualified": 2, "proposal": 3, "closed_won": 4, "closed_lost": 0}


def dashboard_period(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    """[start, end] of a dashboard request: default the last 30 days to today; at most two years."""
    end = end or today
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    if end < start:
        raise ApiError(400, "VALIDATION_ERROR", "end is before start", field="end")
    if (end - start).days >= MAX_DAYS:
        raise ApiError(400, "VALIDATION_ERROR", f"the period is longer than {MAX_DAYS} days", field="start")
    return start, end


async def dashboard(conn: AsyncConnection, campaign_id: str | None, start: date, end: date) -> Dashboard:
    """Every figure of the analytics page for one campaign (or all: ``None``) over [start, end] (UTC
    days): the stored sums of the closed days and hours plus a live scan of the open hour(s)
    (``rollup.sums``), put together by :func:`assemble`."""
    if campaign_id is not None:
        campaigns = [await get_or_404(conn, campaign_id)]
    else:
        campaigns = await repo.list_all(conn)
    ids = [c.id for c in campaigns]
    return assemble(
        campaign_id, campaigns, start, end, await rollup.sums(conn, ids, start, end, scope=campaign_id)
    )


def _kpis(
    campaign_id: str, name: str, status: str, budget: float | None, rows: Iterable[rollup.Totals]
) -> CampaignKpis:
    totals = rollup.Totals()
    for row in rows:
        totals.add(row)
    revenue = float(totals.revenue)
    return CampaignKpis(
        campaign_id=campaign_id,
        name=name,
        status=status,
        leads=totals.leads,
        qualified=totals.qualified,
        won=totals.won,
        conversion_rate=stats.ratio(totals.qualified, totals.leads),
        cost_per_lead=round(budget / totals.leads, 2) if budget is not None and totals.leads else None,
        revenue=revenue,
        roi=stats.roi(revenue, budget) if budget is not None else None,
    )


def _speed(buckets: Iterable[tuple[int, int]]) -> dict[str, int | float | None]:
    """Speed to lead from (minutes bucket, leads) pairs (``repository.WAITING``/``LOST`` included)."""
    items = list(buckets)
    timed = [(float(minutes), n) for minutes, n in items if minutes >= 0]
    return {
        "contacted": sum(n for _, n in timed),
        "waiting": sum(n for minutes, n in items if minutes == repo.WAITING),
        "median_minutes": stats.percentile(timed, 0.5),
        "p90_minutes": stats.percentile(timed, 0.9),
    }


def assemble(
    campaign_id: str | None,
    campaigns: Sequence[CampaignRow],
    start: date,
    end: date,
    sums: rollup.Sums,
) -> Dashboard:
    """The dashboard from the sums (pure: tested with hand-made sums)."""
    per_day: Counter[date] = Counter()
    per_campaign: defaultdict[str, list[rollup.Totals]] = defaultdict(list)
    for (campaign, day), sums_of_day in sums.days.items():
        if start <= day <= end:
            per_day[day] += sums_of_day.leads
            per_campaign[campaign].append(sums_of_day)
    known = {c.id: c for c in campaigns}
    kpis = [
        _kpis(
            c.id,
            c.name,
            c.status,
            float(c.budget) if c.budget is not None else None,
            per_campaign.get(c.id, []),
        )
        for c in campaigns
    ]
    kpis.sort(key=lambda k: (-k.leads, k.campaign_id))
    budgets = [float(c.budget) for c in campaigns if c.budget is not None]
    everything = [t for rows in per_campaign.values() for t in rows]
    if campaign_id is not None:
        only = known[campaign_id]
        totals = _kpis(only.id, only.name, only.status, budgets[0] if budgets else None, everything)
    else:
        totals = _kpis("*", "All campaigns", "", sum(budgets) if budgets else None, everything)

    channels: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    grades: Counter[str] = Counter({g: 0 for g in "ABCD"})
    statuses: Counter[str] = Counter()
    content: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_rep: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
    by_campaign: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
    everyone_speed: list[tuple[int, int]] = []
    for (campaign, facet, value, minutes), (leads, qualified) in sums.facets.items():
        if facet == "channel":
            channels[value or "unknown"] += leads
        elif facet == "source":
            sources[value or ""] += leads
        elif facet == "grade":
            grades[value or ""] += leads
        elif facet == "status":
            statuses[value or ""] += leads
        elif facet == "content" and value is not None:
            content[value][0] += leads
            content[value][1] += qualified
        elif facet == "speed":
            by_rep[value or "(unassigned)"].append((minutes, leads))
            by_campaign[campaign].append((minutes, leads))
            everyone_speed.append((minutes, leads))
    reached = [0] * len(FUNNEL)
    for status, leads in statuses.items():
        for stage in range(_STAGE_OF.get(status, 0) + 1):
            reached[stage] += leads
    everyone = reached[0]

    variants = sorted(
        (
            VariantOut(utm_content=c, leads=n, converted=q, conversion_rate=stats.ratio(q, n))
            for c, (n, q) in content.items()
            if n
        ),
        key=lambda v: (-v.leads, v.utm_content),
    )
    verdict = stats.compare([stats.Variant(v.utm_content, v.leads, v.converted) for v in variants])
    return Dashboard(
        campaign_id=campaign_id,
        period=Period(start=start, end=end),
        totals=totals,
        leads_per_day=[
            DayCount(day=start + timedelta(days=i), leads=per_day[start + timedelta(days=i)])
            for i in range((end - start).days + 1)
        ],
        by_channel=_ranked(channels),
        by_source=_ranked(sources),
        grades=dict(sorted((g, n) for g, n in grades.items() if n or g in "ABCD")),
        funnel=[
            FunnelStage(stage=name, leads=reached[i], rate=stats.ratio(reached[i], everyone))
            for i, name in enumerate(FUNNEL)
        ],
        speed_to_lead=Speed.model_validate(_speed(everyone_speed)),
        speed_by_rep=sorted(
            (RepSpeedOut(rep=rep, **_speed(items)) for rep, items in by_rep.items()),
            key=lambda r: (-(r.contacted + r.waiting), r.rep),
        ),
        speed_by_campaign=sorted(
            (CampaignSpeed(campaign_id=c, **_speed(items)) for c, items in by_campaign.items()),
            key=lambda r: (-(r.contacted + r.waiting), r.campaign_id),
        ),
        campaigns=kpis,
        top_content=variants[:TOP_CONTENT],
        variants=variants,
        ab_test=AbTest(
            a=verdict.a,
            b=verdict.b,
            test=verdict.test,
            p_value=verdict.p_value,
            significant=verdict.significant,
            summary=verdict.summary,
        )
        if verdict is not None
        else None,
    )


def _ranked(counts: Counter[str]) -> dict[str, int]:
    """Largest first, ties by name (the same order whatever order the sums came in)."""
    return dict(sorted(((k, n) for k, n in counts.items() if n), key=lambda kv: (-kv[1], kv[0])))
