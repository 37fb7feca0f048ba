"""Privacy endpoints: right of access, right to deletion, anonymisation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from leadflow.db import scrub_after_erase
from leadflow.errors import responses
from leadflow.kit.ids import LEAD_ID_RE
from leadflow.leads.schemas import LeadDetail
from leadflow.privacy import service
from leadflow.security.audit import Actor, record
from leadflow.security.auth import require
from leadflow.security.tokens import Principal

router = APIRouter(prefix="/v1/api", tags=["privacy"])


class ErasureRequest(BaseModel):
    email: str = Field(max_length=320, examples=["john.doe@company.com"])
    reason: str = Field("data_subject_request", max_length=50, examples=["gdpr_article_17"])


class ErasureResponse(BaseModel):
    leads_deleted: int = Field(examples=[2])
    remote_deletions_queued: list[str] = Field(
        examples=[["hubspot", "mailchimp"]], description="Connected tools asked to delete their copy"
    )
    tombstone: bool = Field(True, description="Only the blind index is kept, to flag a later re-import")


@router.get(
    "/privacy/export",
    summary="Export everything about a person (right of access)",
    description="Every lead of this e-mail address with activities, consents and enrichment, as JSON. "
    "Scope `admin`; audited.",
    responses=responses(400, 401, 403),
)
async def export(
    request: Request,
    email: Annotated[str, Query(max_length=320, examples=["john.doe@company.com"])],
    principal: Principal = Depends(require("admin")),
) -> dict[str, Any]:
    state = request.app.state
    async with state.engine.begin() as conn:
        data = await service.export(conn, state.cipher, email)
        await record(
            conn,
            Actor.from_request(request, principal),
            "privacy.export",
            "person",
            None,
            {"lead_ids": [lead["lead_id"] for lead in data["leads"]]},
        )
    return data


@router.post(
    "/privacy/erase",
    response_model=ErasureResponse,
    summary="Erase a person (right to deletion)",
    description="Deletes the person's leads and activities, queues deletion at connected CRM and e-mail "
    "tools (HubSpot GDPR delete, Mailchimp permanent delete, SendGrid contact delete) and keeps a "
    "tombstone with only the blind index. Scope `admin`; audited.",
    responses=responses(400, 401, 403),
)
async def erase(
    request: Request, body: ErasureRequest, principal: Principal = Depends(require("admin"))
) -> ErasureResponse:
    state = request.app.state
    actor = Actor.from_request(request, principal)
    async with state.engine.begin() as conn:
        result = await service.erase(
            conn, state.cipher, state.settings, body.email, body.reason, actor.request_id
        )
        await record(
            conn,
            actor,
            "privacy.erase",
            "person",
            None,
            {
                "leads_deleted": result.leads_deleted,
                "remote": result.remote_deletions_queued,
                "reason": body.reason,
            },
        )
    await scrub_after_erase(state.engine)
    state.wake_worker()
    return ErasureResponse(
        leads_deleted=result.leads_deleted, remote_deletions_queued=result.remote_deletions_queued
    )


@router.post(
    "/leads/{lead_id}/anonymize",
    response_model=LeadDetail,
    summary="Anonymise a lead",
    description="Wipes personal fields but keeps campaign, score, grade, status and dates so analytics "
    "stay correct. Scope `admin`; audited.",
    responses=responses(401, 403, 404, 409),
)
async def anonymize(
    request: Request,
    lead_id: Annotated[str, Path(examples=["lead_abc123def456"])],
    principal: Principal = Depends(require("admin")),
) -> LeadDetail:
    from leadflow.errors import ApiError
    from leadflow.leads import service as leads_service

    if not LEAD_ID_RE.match(lead_id):
        raise ApiError(404, "LEAD_NOT_FOUND", "Lead not found", field="lead_id")
    state = request.app.state
    async with state.engine.begin() as conn:
        await service.anonymize(conn, state.cipher, lead_id, principal.actor)
        await record(conn, Actor.from_request(request, principal), "lead.anonymize", "lead", lead_id)
    await scrub_after_erase(state.engine)
    async with state.engine.connect() as conn:
        return await leads_service.detail(conn, state.cipher, lead_id)
