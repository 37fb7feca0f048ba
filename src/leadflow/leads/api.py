"""Lead endpoints: public capture, status, and the authenticated management API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from leadflow.errors import ApiError, ErrorBody, json_response, responses
from leadflow.kit.clock import UtcDateTime
from leadflow.kit.ids import LEAD_ID_RE
from leadflow.kit.pagination import CursorParam, decode_cursor
from leadflow.kit.state import AppState, AppStateDep, WriteConn
from leadflow.leads import service
from leadflow.leads.capture import store
from leadflow.leads.capture.http import CORS_HEADERS, SPOOLED_MESSAGE, capture_lead
from leadflow.leads.repository import LeadFilter
from leadflow.leads.schemas import (
    CaptureRequest,
    CaptureResponse,
    Grade,
    LeadDetail,
    LeadPage,
    LeadStatusResponse,
    LeadUpdate,
    Status,
)
from leadflow.security.audit import Actor, Change, change_dependency, record
from leadflow.security.auth import require
from leadflow.security.tokens import Principal

router = APIRouter(prefix="/v1/api", tags=["leads"])
log = structlog.get_logger("leadflow.leads")

# Declared before a route's connection: resolving a token may need one (SQLite's pool holds one).
LeadReader = Annotated[Principal, Depends(require("leads:read"))]
LeadId = Annotated[str, Path(description="The public lead id", examples=["lead_abc123def456"])]


_scope = service.only_assigned_to  # sales users see only the leads assigned to them; others all


def _email_hash(state: AppState, email: str) -> str:
    from leadflow.kit.text import email_index_form, normalise_email

    try:
        normal = normalise_email(email)
    except ValueError as exc:
        raise ApiError(400, "VALIDATION_ERROR", "Invalid email format", field="email") from exc
    return str(state.cipher.blind_index(email_index_form(normal)))


def _check_lead_id(lead_id: str) -> str:
    if not LEAD_ID_RE.match(lead_id):
        raise ApiError(404, "LEAD_NOT_FOUND", "Lead not found", field="lead_id")
    return lead_id


@router.options("/leads", include_in_schema=False)
async def capture_preflight(request: Request, state: AppStateDep) -> Response:
    origin = request.headers.get("origin")
    if not origin or not await state.campaigns.any_origin_allowed(origin):
        raise ApiError(403, "ORIGIN_NOT_ALLOWED", "This origin may not submit leads")
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": CORS_HEADERS,
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        },
    )


@router.post(
    "/leads",
    status_code=201,
    response_model=CaptureResponse,
    summary="Capture a lead",
    description=(
        "Public endpoint for campaign forms. Validates, normalises, de-duplicates (same e-mail and "
        "campaign within 24 h answers 409 with the existing `lead_id`), scores and stores the lead, its "
        "`created` activity and its processing job in one transaction before answering 201. "
        "If the database (PostgreSQL/MySQL) cannot be reached, the lead is written to the server's "
        "local encrypted spool (on disk, fsync'd) and the answer is 202 with its `lead_id`: it is "
        "stored under that id, in order, once the database is back (until then its status answers 503). "
        "Send `Idempotency-Key` to make retries safe: a retry with the same key returns the original "
        "response. Campaigns with a token require `X-Campaign-Token` (or a bearer token with the ingest "
        "role); campaigns with allowed origins reject other browser `Origin`s. A campaign that is not "
        "`active`, or whose `end_date` (UTC, inclusive) has passed, takes no leads: 409 `CAMPAIGN_INACTIVE`."
    ),
    responses={
        **responses(400, 401, 403, 404, 409, 413, 415, 429, 503),
        409: {
            "model": ErrorBody,
            "description": "DUPLICATE_SUBMISSION (with the existing `lead_id`), IDEMPOTENCY_KEY_REUSED, or "
            "CAMPAIGN_INACTIVE (the campaign is paused, draft or completed, or past its end date)",
            "content": {
                "application/json": {
                    "example": {
                        "success": False,
                        "error": "CAMPAIGN_INACTIVE",
                        "message": "This campaign ended on 2025-12-31 and no longer takes requests.",
                        "field": "campaign_id",
                        "code": 409,
                    }
                }
            },
        },
        201: {
            "description": "Stored (or the original answer to a retried Idempotency-Key)",
            "headers": {"Access-Control-Allow-Origin": {"schema": {"type": "string"}}},
        },
        202: {
            "model": CaptureResponse,
            "description": "The database is unreachable: accepted into this server's durable spool under "
            "`lead_id`, stored when the database is back (de-duplication happens then: a duplicate is "
            "stored and linked to the earlier lead, never dropped)",
            "content": {
                "application/json": {
                    "example": {
                        "success": True,
                        "lead_id": "lead_abc123def456",
                        "message": SPOOLED_MESSAGE,
                        "next_steps": {
                            "expected_response_time": "2 hours",
                            "contact_method": "email",
                            "tracking_enabled": True,
                        },
                    }
                }
            },
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CaptureRequest"}}},
        }
    },
)
async def capture(
    request: Request,
    state: AppStateDep,
    x_campaign_token: Annotated[
        str | None, Header(description="The campaign's token, when the campaign has one")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", max_length=255, description="Makes retries return the first answer"),
    ] = None,
    origin: Annotated[str | None, Header(description="Browser origin of the form")] = None,
) -> Response:
    # The headers are declared above for the documentation and validated by FastAPI; the work is
    # capture_lead's (leads/capture/http.py), which CaptureFastPath also calls without FastAPI's routing.
    return await capture_lead(state, request.scope, request.receive)


@router.get(
    "/leads/{lead_id}/status",
    response_model=LeadStatusResponse,
    summary="Lead status",
    description=(
        "Status, assignee and next action of a lead (no personal data). Scope `leads:status`. "
        "A sales token sees only the leads assigned to it (404 for the others), like the lead detail. "
        "Audited in aggregate: one entry per token, address and minute with the count and the lead ids. "
        "503 while the database is unreachable, and for a lead accepted into the capture spool (202) "
        "that is not stored yet."
    ),
    responses=responses(401, 403, 404, 503),
)
async def lead_status(
    request: Request,
    state: AppStateDep,
    lead_id: LeadId,
    principal: Principal = Depends(require("leads:status")),
) -> Response:
    state.audit.add(Actor.from_request(request, principal), "lead.status", "lead", lead_id)
    _check_lead_id(lead_id)
    scope = _scope(principal)
    if state.point_reader is not None:
        body = service.status_body(store.lead_status(state.point_reader, lead_id), scope)
    else:
        spool = state.writer.spool
        if spool is not None and spool.holds(lead_id):
            raise ApiError(
                503, "SERVICE_UNAVAILABLE", "The lead is accepted and not stored yet; retry shortly",
                headers={"Retry-After": "5"},
            )  # fmt: skip
        async with state.engine.connect() as conn:
            body = await service.status(conn, lead_id, only_assigned_to=scope)
    return json_response(body.model_dump(mode="json"))


@router.get(
    "/leads",
    response_model=LeadPage,
    summary="List leads",
    description="Newest first, with filters and cursor pagination. Scope `leads:read`.",
    responses=responses(400, 401, 403),
)
async def list_leads(
    request: Request,
    state: AppStateDep,
    principal: LeadReader,
    conn: WriteConn,
    campaign_id: Annotated[str | None, Query(max_length=100)] = None,
    status: Status | None = None,
    grade: Grade | None = None,
    assigned_to: Annotated[str | None, Query(max_length=100)] = None,
    email: Annotated[
        str | None,
        Query(max_length=320, description="Exact e-mail address (matched by blind index, case-insensitive)"),
    ] = None,
    created_from: Annotated[
        UtcDateTime | None, Query(description="Inclusive, ISO 8601 (UTC if no zone)")
    ] = None,
    created_to: Annotated[
        UtcDateTime | None, Query(description="Exclusive, ISO 8601 (UTC if no zone)")
    ] = None,
    cursor: CursorParam = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> LeadPage:
    def aware(value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    flt = LeadFilter(
        campaign_id,
        status,
        grade,
        assigned_to,
        aware(created_from),
        aware(created_to),
        only_assigned_to=_scope(principal),
        email_hash=_email_hash(state, email) if email is not None else None,
    )
    before = decode_cursor(cursor)
    result = await service.page(conn, state.cipher, flt, before, limit)
    # The audit entry commits with the route's transaction, before the answer is sent.
    await record(
        conn,
        Actor.from_request(request, principal),
        "lead.list",
        "lead",
        None,
        {"lead_ids": [item.lead_id for item in result.items]},
    )
    return result


@router.get(
    "/leads/{lead_id}",
    response_model=LeadDetail,
    summary="Lead detail",
    description="The whole lead, decrypted, with its score breakdown and activities. Scope `leads:read`.",
    responses=responses(401, 403, 404),
)
async def lead_detail(
    request: Request,
    state: AppStateDep,
    lead_id: LeadId,
    principal: LeadReader,
    conn: WriteConn,
) -> LeadDetail:
    _check_lead_id(lead_id)
    result = await service.detail(conn, state.cipher, lead_id, only_assigned_to=_scope(principal))
    await record(conn, Actor.from_request(request, principal), "lead.read", "lead", lead_id)
    return result


@router.patch(
    "/leads/{lead_id}",
    response_model=LeadDetail,
    summary="Update a lead",
    description=(
        "Change status (allowed transitions only, else 409), assignment, follow-up date, qualification, "
        "deal value (closed_won leads) or add a note. Each change is recorded as an activity. "
        "Rectification (GDPR Art. 16): `first_name`, `last_name`, `email`, `phone`, `company` are "
        "re-encrypted; a corrected e-mail gets a new blind index, so de-duplication, `GET /v1/api/leads"
        "?email=` and the privacy tools find the lead under the new address only; CRMs that already "
        "have the lead get it again as an update. `do_not_sell` records the person's opt-out of "
        "sale/sharing (all their leads, consent history). Audited (field names, never values). "
        "Scope `leads:write`."
    ),
    responses=responses(400, 401, 403, 404, 409),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "contacted": {"value": {"status": "contacted", "note": "Called, will send a quote"}},
                        "won": {"value": {"status": "closed_won", "deal_value": 7500}},
                        "rectify": {"value": {"email": "john.doe@company.org", "last_name": "Doe-Smith"}},
                        "opt_out": {"value": {"do_not_sell": True}},
                    }
                }
            }
        }
    },
)
async def update_lead(
    lead_id: LeadId,
    body: LeadUpdate,
    change: Change = Depends(change_dependency("leads:write")),
) -> LeadDetail:
    _check_lead_id(lead_id)
    state, scope = change.state, _scope(change.principal)
    crm = await service.update(
        change.conn,
        state.cipher,
        lead_id,
        body,
        change.actor,
        only_assigned_to=scope,
        settings=state.settings,
        analytics=state.analytics,
    )
    if crm or body.do_not_sell:
        change.after.add(state.wake_worker)  # once the change is committed
    return await service.detail(change.conn, state.cipher, lead_id, only_assigned_to=scope)


def extra_schemas() -> dict[str, Any]:
    """Component schemas referenced by hand-written request bodies."""
    schema = CaptureRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"CaptureRequest": schema, **defs}
