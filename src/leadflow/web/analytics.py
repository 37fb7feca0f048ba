"""Analytics (``/analytics``): every figure of ``GET /v1/api/analytics`` for all campaigns or one, for a
date range, as tables and charts (``static/charts.js`` draws them from ``data-`` attributes)."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.responses import Response

from leadflow.campaigns import analytics
from leadflow.campaigns import repository as campaigns_repo
from leadflow.kit.clock import utcnow
from leadflow.kit.state import ReadConn
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import count_view, page_router, require_page
from leadflow.web.render import render

router = page_router()
# The signed-in user with the API scope the page needs (web/auth.py PageUser, typed for mypy).
Analyst = Annotated[SessionPrincipal, Depends(require_page("analytics:read"))]


def _share(counts: dict[str, int]) -> list[tuple[str, int, float]]:
    """(label, count, percent of the largest) for the bar lists."""
    top = max(counts.values(), default=0)
    return [(label, n, round(100 * n / top, 1) if top else 0.0) for label, n in counts.items()]


@router.get("/analytics")
async def analytics_page(
    request: Request,
    user: Analyst,
    conn: ReadConn,
    campaign_id: Annotated[str, Query(max_length=100)] = "",
    start: date | None = None,
    end: date | None = None,
) -> Response:
    chosen = campaign_id or None
    first, last = analytics.dashboard_period(start, end, utcnow().date())
    count_view(request, user, "analytics.dashboard", "campaign", chosen)
    figures = await analytics.dashboard(conn, chosen, first, last)
    days = figures.leads_per_day
    return render(
        request,
        "analytics.html",
        {
            "title": "Analytics",
            "f": figures,
            "campaigns": await campaigns_repo.list_all(conn),
            "chosen": chosen or "",
            "chart_x": json.dumps([d.day.isoformat() for d in days]),
            "chart_y": json.dumps([d.leads for d in days]),
            "channels": _share(figures.by_channel),
            "sources": _share(figures.by_source),
            "grades": _share(figures.grades),
            "funnel": _share({s.stage: s.leads for s in figures.funnel}),
            "api_url": "/v1/api/analytics" + (f"/{chosen}" if chosen else ""),
        },
    )
