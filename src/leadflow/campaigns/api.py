"""Campaign endpoints: CRUD, campaign tokens and analytics."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

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
)
from leadflow.errors import json_response, responses
from leadflow.kit.state import AppStateDep, ReadConn
from leadflow.security.audit import Actor, Change, change_dependency
from leadflow.security.auth import require
from leadflow.security.tokens import Principal

router = APIRouter(prefix="/v1/api/campaigns", tags=["campaigns"])
# A change: the connection (committed at the boundary), the actor, and what to do after the commit.
CampaignChange = Annotated[Change, Depends(change_dependency("campaigns:write"))]
CampaignId = Annotated[str, Path(max_length=100, examples=["nextcloud-installation-2025"])]


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
    description="Only the fields sent change. Pausing a campaign makes capture answer 409. "
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
