"""Campaign performance: stored sums of closed days plus a live scan of today and yesterday (``rollup``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from time import monotonic

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadflow.campaigns import repository as repo
from leadflow.campaigns import rollup
from leadflow.campaigns.repository import CampaignRow
from leadflow.campaigns.schemas import CampaignAnalytics, ContentPerformance, Metrics, Period
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
