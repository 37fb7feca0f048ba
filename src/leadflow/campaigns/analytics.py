"""Campaign performance: stored sums of closed days plus a live scan of today and yesterday (``rollup``),
and the analytics dashboard (:func:`dashboard`: every figure of the analytics page, one campaign or all)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
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
    return summarise(campaign, await rollup.groups(conn, campaign_id, start, end), start, end)


def summarise(
    campaign: CampaignRow, rows: Iterable[rollup.Group], start: date, end: date
) -> CampaignAnalytics:
    """The campaign's figures from its grouped sums (``rollup.groups``): the analytics API and the
    daily/weekly reports compute them here, so they cannot disagree."""
    total = qualified = score_sum = 0
    revenue = Decimal(0)
    sources: Counter[str] = Counter()
    content_total: Counter[str] = Counter()
    content_qualified: Counter[str] = Counter()
    for row in rows:
        n, q = int(row.total), int(row.qualified or 0)
        total += n
        qualified += q
        score_sum += int(row.score_sum or 0)
        revenue += Decimal(row.revenue or 0)
        sources[row.source] += n
        if row.utm_content:
            content_total[row.utm_content] += n
            content_qualified[row.utm_content] += q

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
            average_lead_score=round(score_sum / total, 1) if total else 0.0,
            cost_per_lead=round(budget / total, 2) if total else 0.0,
            revenue_generated=float(revenue),
        ),
        lead_sources=dict(sources.most_common()),
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
    days): four grouped scans of the period's leads in SQL, put together by :func:`assemble`."""
    if campaign_id is not None:
        campaigns = [await get_or_404(conn, campaign_id)]
    else:
        campaigns = await repo.list_all(conn)
    first = datetime.combine(start, time(), UTC)
    last = datetime.combine(end + timedelta(days=1), time(), UTC)
    return assemble(
        campaign_id,
        campaigns,
        start,
        end,
        await repo.day_totals(conn, campaign_id, first, last),
        await repo.mix(conn, campaign_id, first, last),
        await repo.content_totals(conn, campaign_id, first, last),
        await repo.response_buckets(conn, campaign_id, first, last),
    )


def _kpis(
    campaign_id: str, name: str, status: str, budget: float | None, rows: Sequence[repo.DayTotal]
) -> CampaignKpis:
    total = sum(r.leads for r in rows)
    qualified = sum(r.qualified for r in rows)
    revenue = float(sum((r.revenue for r in rows), Decimal(0)))
    return CampaignKpis(
        campaign_id=campaign_id,
        name=name,
        status=status,
        leads=total,
        qualified=qualified,
        won=sum(r.won for r in rows),
        conversion_rate=stats.ratio(qualified, total),
        cost_per_lead=round(budget / total, 2) if budget is not None and total else None,
        revenue=revenue,
        roi=stats.roi(revenue, budget) if budget is not None else None,
    )


def _speed(buckets: Iterable[repo.ResponseBucket]) -> dict[str, int | float | None]:
    items = list(buckets)
    timed = [(b.minutes, b.leads) for b in items if b.minutes >= 0]
    return {
        "contacted": sum(n for _, n in timed),
        "waiting": sum(b.leads for b in items if b.minutes == repo.WAITING),
        "median_minutes": stats.percentile(timed, 0.5),
        "p90_minutes": stats.percentile(timed, 0.9),
    }


def _variant(c: repo.ContentTotal) -> VariantOut:
    return VariantOut(
        utm_content=c.utm_content,
        leads=c.leads,
        converted=c.qualified,
        conversion_rate=stats.ratio(c.qualified, c.leads),
    )


def assemble(
    campaign_id: str | None,
    campaigns: Sequence[CampaignRow],
    start: date,
    end: date,
    days: Sequence[repo.DayTotal],
    mix: Sequence[repo.Mix],
    content: Sequence[repo.ContentTotal],
    buckets: Sequence[repo.ResponseBucket],
) -> Dashboard:
    """The dashboard from the grouped sums (pure: tested with hand-made sums)."""
    per_day: Counter[date] = Counter()
    per_campaign: defaultdict[str, list[repo.DayTotal]] = defaultdict(list)
    for row in days:
        per_day[row.day] += row.leads
        per_campaign[row.campaign_id].append(row)
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
    if campaign_id is not None:
        only = known[campaign_id]
        totals = _kpis(only.id, only.name, only.status, budgets[0] if budgets else None, days)
    else:
        totals = _kpis("*", "All campaigns", "", sum(budgets) if budgets else None, days)

    channels: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    grades: Counter[str] = Counter({g: 0 for g in "ABCD"})
    reached = [0] * len(FUNNEL)
    for m in mix:
        channels[m.channel or "unknown"] += m.leads
        sources[m.source] += m.leads
        grades[m.grade] += m.leads
        for stage in range(_STAGE_OF.get(m.status, 0) + 1):
            reached[stage] += m.leads
    everyone = reached[0]

    by_rep: defaultdict[str, list[repo.ResponseBucket]] = defaultdict(list)
    by_campaign: defaultdict[str, list[repo.ResponseBucket]] = defaultdict(list)
    for b in buckets:
        by_rep[b.rep or "(unassigned)"].append(b)
        by_campaign[b.campaign_id].append(b)

    variants = sorted((_variant(c) for c in content), key=lambda v: (-v.leads, v.utm_content))
    verdict = stats.compare([stats.Variant(v.utm_content, v.leads, v.converted) for v in variants])
    return Dashboard(
        campaign_id=campaign_id,
        period=Period(start=start, end=end),
        totals=totals,
        leads_per_day=[
            DayCount(day=start + timedelta(days=i), leads=per_day[start + timedelta(days=i)])
            for i in range((end - start).days + 1)
        ],
        by_channel=dict(channels.most_common()),
        by_source=dict(sources.most_common()),
        grades=dict(sorted(grades.items())),
        funnel=[
            FunnelStage(stage=name, leads=reached[i], rate=stats.ratio(reached[i], everyone))
            for i, name in enumerate(FUNNEL)
        ],
        speed_to_lead=Speed.model_validate(_speed(buckets)),
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
