"""Campaign endpoints: CRUD, campaign tokens and analytics; the analytics dashboard (``dashboard_router``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns import analytics as dashboards
from leadflow.campaigns import repository as repo
from leadflow.campaigns import service
from leadflow.campaigns.schemas import (
    CampaignAnalytics,
    CampaignCreate,
    CampaignList,
    CampaignOut,
    CampaignStatus,
    CampaignUpdate,
    CampaignWithToken,
    Dashboard,
)
from leadflow.errors import json_response, responses
from leadflow.kit.clock import utcnow
from leadflow.kit.state import AppState, AppStateDep, ReadConn
from leadflow.security.audit import Actor, Change, change_dependency
from leadflow.security.auth import require
from leadflow.security.tokens import Principal

router = APIRouter(prefix="/v1/api/campaigns", tags=["campaigns"])
# A change: the connection (committed at the boundary), the actor, and what to do after the commit.
CampaignChange = Annotated[Change, Depends(change_dependency("campaigns:write"))]
CampaignId = Annotated[str, Path(max_length=100, examples=["nextcloud-installation-2025"])]
# The custom dashboard API: every figure of the workspace's analytics page.
dashboard_router = APIRouter(prefix="/v1/api/analytics", tags=["analytics"])


@router.get(
    "",
    response_model=CampaignList,
    summary="List campaigns",
    description="Newest first. Scope `campaigns:read`.",
    responses=responses(400, 401, 403),
)
async def list_campaigns(
    request: Request,
    principal: Annotated[Principal, Depends(require("campaigns:read"))],
    state: AppStateDep,
    conn: ReadConn,
    status: CampaignStatus | None = None,
) -> CampaignList:
    state.audit.add(Actor.from_request(request, principal), "campaign.list", "campaign")
    rows = await repo.list_all(conn, status)
    return CampaignList(items=[service.to_out(r) for r in rows])


@router.post(
    "",
    status_code=201,
    response_model=CampaignWithToken,
    summary="Create a campaign",
    description="With `generate_token: true` the response carries the campaign token, once. "
    "Scope `campaigns:write`.",
    responses=responses(400, 401, 403, 409),
)
async def create_campaign(
    body: CampaignCreate,
    change: CampaignChange,
) -> CampaignWithToken:
    created = await service.create(change.conn, body)
    await change.record("campaign.create", "campaign", body.id)
    change.after.add(change.state.campaigns.invalidate, body.id)
    return created


@router.get(
    "/{campaign_id}",
    response_model=CampaignOut,
    summary="Get a campaign",
    description="Scope `campaigns:read`.",
    responses=responses(401, 403, 404),
)
async def get_campaign(
    request: Request,
    principal: Annotated[Principal, Depends(require("campaigns:read"))],
    campaign_id: CampaignId,
    state: AppStateDep,
    conn: ReadConn,
) -> CampaignOut:
    state.audit.add(Actor.from_request(request, principal), "campaign.read", "campaign", campaign_id)
    return service.to_out(await service.get_or_404(conn, campaign_id))


@router.patch(
    "/{campaign_id}",
    response_model=CampaignOut,
    summary="Update a campaign",
    description="Only the fields sent change. Capture answers 409 `CAMPAIGN_INACTIVE` for a campaign "
    "that is not `active` or whose `end_date` (UTC, inclusive) has passed. "
    "Scope `campaigns:write`.",
    responses=responses(400, 401, 403, 404),
)
async def update_campaign(
    campaign_id: CampaignId,
    body: CampaignUpdate,
    change: CampaignChange,
) -> CampaignOut:
    updated = await service.update(change.conn, campaign_id, body)
    await change.record(
        "campaign.update",
        "campaign",
        campaign_id,
        {"fields": sorted(body.model_fields_set)},
    )
    change.after.add(change.state.campaigns.invalidate, campaign_id)
    return updated


@router.delete(
    "/{campaign_id}",
    status_code=204,
    summary="Delete a campaign",
    description="Only a campaign without leads can be deleted (else 409). Scope `campaigns:write`.",
    responses=responses(401, 403, 404, 409),
)
async def delete_campaign(
    campaign_id: CampaignId,
    change: CampaignChange,
) -> Response:
    await service.delete(change.conn, campaign_id)
    await change.record("campaign.delete", "campaign", campaign_id)
    change.after.add(change.state.campaigns.invalidate, campaign_id)
    return Response(status_code=204)


@router.post(
    "/{campaign_id}/token",
    response_model=CampaignWithToken,
    summary="Create or rotate the campaign token",
    description="The old token stops working at once; the new one is shown only here. "
    "Scope `campaigns:write`.",
    responses=responses(401, 403, 404),
)
async def rotate_token(
    campaign_id: CampaignId,
    change: CampaignChange,
) -> CampaignWithToken:
    result = await service.set_token(change.conn, campaign_id, enabled=True)
    await change.record("campaign.token_rotate", "campaign", campaign_id)
    change.after.add(change.state.campaigns.invalidate, campaign_id)
    return result


@router.delete(
    "/{campaign_id}/token",
    response_model=CampaignOut,
    summary="Remove the campaign token",
    description="Submissions no longer need X-Campaign-Token. Scope `campaigns:write`.",
    responses=responses(401, 403, 404),
)
async def remove_token(
    campaign_id: CampaignId,
    change: CampaignChange,
) -> CampaignOut:
    result = await service.set_token(change.conn, campaign_id, enabled=False)
    await change.record("campaign.token_remove", "campaign", campaign_id)
    change.after.add(change.state.campaigns.invalidate, campaign_id)
    return CampaignOut(**result.model_dump(exclude={"token"}))


@router.get(
    "/{campaign_id}/analytics",
    response_model=CampaignAnalytics,
    summary="Campaign analytics",
    description=(
        "Performance over [start, end] (dates, inclusive; default: from the campaign's start or first "
        "lead to today). qualified = marketing/sales qualified or customer; conversion_rate = "
        "qualified / total; cost_per_lead = budget / total; revenue = closed-won deal values. "
        "Figures may be up to ANALYTICS_CACHE_SECONDS old (the `Age` header says how old). "
        "Scope `analytics:read`."
    ),
    responses=responses(400, 401, 403, 404),
)
async def analytics(
    request: Request,
    campaign_id: CampaignId,
    state: AppStateDep,
    principal: Principal = Depends(require("analytics:read")),
    start: Annotated[date | None, Query(description="First day, YYYY-MM-DD")] = None,
    end: Annotated[date | None, Query(description="Last day, YYYY-MM-DD")] = None,
) -> Response:
    state.audit.add(Actor.from_request(request, principal), "campaign.analytics", "campaign", campaign_id)
    # A cache hit takes no database connection (on SQLite the capture writer may hold the only one).
    body, age = await state.analytics.get_or_compute(state.engine, campaign_id, start, end)
    return json_response(body.model_dump(mode="json"), headers={"Age": str(int(age))})


_DASHBOARD = (
    "Over [start, end] (UTC dates, inclusive; default: the last 30 days to today; at most 731 days): "
    "`leads_per_day` (every day, zeros included), `by_channel`, `by_source`, `grades`; `funnel` "
    "new → contacted → qualified → proposal → won (a lead counts at every stage up to its current "
    "status; a lost lead at `new`); `totals` and per-campaign `campaigns`: leads, qualified, won, "
    "conversion_rate = qualified / leads, cost_per_lead = budget / leads, revenue = closed-won deal "
    "values, roi = (revenue − budget) / budget (null without a budget); `speed_to_lead` overall, per "
    "rep (`assigned_to`) and per campaign: capture → first contact (the lead's first status change), "
    "median and p90 in minutes (rounded to the minute under 2 h, to 15 min under a day, else to the "
    "hour), with the leads still waiting; `top_content` and `variants` (`utm_content`, converted = "
    "qualified) and `ab_test`: the two variants with the most leads compared with a two-proportion "
    "z-test, or Fisher's exact test when an expected count is below 5, stated in words. "
    "Aggregated in SQL on every request. Scope `analytics:read`."
)
_DASHBOARD_EXAMPLE = {
    "ab_test": {
        "a": "ad-variant-a",
        "b": "ad-variant-b",
        "test": "two_proportion_z",
        "p_value": 0.0123,
        "significant": True,
        "summary": "ad-variant-b converts better than ad-variant-a (31.0% vs 22.0%); the difference is "
        "unlikely to be chance (p = 0.012).",
    }
}
Start = Annotated[date | None, Query(description="First day, YYYY-MM-DD (UTC)")]
End = Annotated[date | None, Query(description="Last day, YYYY-MM-DD (UTC)")]


@dataclass(frozen=True, slots=True)
class DashboardRead:
    """An authorised dashboard request: who asks, over which days, on which connection."""

    request: Request
    principal: Principal
    state: AppState
    conn: AsyncConnection
    start: date | None
    end: date | None

    async def figures(self, campaign_id: str | None) -> Dashboard:
        first, last = dashboards.dashboard_period(self.start, self.end, utcnow().date())
        actor = Actor.from_request(self.request, self.principal)
        self.state.audit.add(actor, "analytics.dashboard", "campaign", campaign_id)
        return await dashboards.dashboard(self.conn, campaign_id, first, last)


async def dashboard_read(
    request: Request,
    # Before the connection: resolving the token may need one (SQLite's pool holds a single one).
    principal: Annotated[Principal, Depends(require("analytics:read"))],
    state: AppStateDep,
    conn: ReadConn,
    start: Start = None,
    end: End = None,
) -> DashboardRead:
    return DashboardRead(request, principal, state, conn, start, end)


def _documented(summary: str, *codes: int) -> dict[str, Any]:
    example = {"application/json": {"example": _DASHBOARD_EXAMPLE}}
    return {
        "response_model": Dashboard,
        "summary": summary,
        "description": _DASHBOARD,
        "responses": {**responses(*codes), 200: {"description": "The figures", "content": example}},
    }


@dashboard_router.get("", **_documented("Analytics of all campaigns", 400, 401, 403))
async def all_campaigns_dashboard(read: Annotated[DashboardRead, Depends(dashboard_read)]) -> Dashboard:
    return await read.figures(None)


@dashboard_router.get("/{campaign_id}", **_documented("Analytics of one campaign", 400, 401, 403, 404))
async def campaign_dashboard(
    campaign_id: CampaignId, read: Annotated[DashboardRead, Depends(dashboard_read)]
) -> Dashboard:
    return await read.figures(campaign_id)
