"""Lead endpoints: public capture, status, and the authenticated management API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import ValidationError
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from leadflow.campaigns.service import CaptureCampaign
from leadflow.config import Settings
from leadflow.db import database_unreachable
from leadflow.enrichment.email_domain import classify_domain
from leadflow.errors import ApiError, database_unavailable, json_response, responses, validation_error
from leadflow.kit.clock import UtcDateTime
from leadflow.kit.ids import LEAD_ID_RE
from leadflow.kit.pagination import CursorParam, decode_cursor
from leadflow.kit.state import AppState, scope_state, state_of
from leadflow.leads import service
from leadflow.leads.capture import RESPONSE_TIMES, prepare
from leadflow.leads.repository import LeadFilter, status_row_sqlite
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
from leadflow.observability import metrics
from leadflow.security.audit import Actor, note_refusal, record_now
from leadflow.security.auth import require
from leadflow.security.ratelimit import Guard, rate_limited
from leadflow.security.tokens import Principal

router = APIRouter(prefix="/v1/api", tags=["leads"])
log = structlog.get_logger("leadflow.leads")

CORS_HEADERS = "Content-Type, X-Campaign-Token, Idempotency-Key, X-Request-ID"
# Answer headers a cross-origin script (embed.js) may read: retry timing and replay marker.
CORS_EXPOSE = "Retry-After, Idempotent-Replayed, RateLimit-Reset"
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


async def _read_body(receive: Receive, length: str | None, limit: int) -> bytes:
    """The whole body from the ASGI ``receive`` channel, refusing more than ``limit`` bytes."""
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes")
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.request":
            body += message.get("body", b"")
            if len(body) > limit:
                raise ApiError(413, "PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes")
            if not message.get("more_body", False):
                return bytes(body)
        elif message["type"] == "http.disconnect":
            # The client went away mid-body: nothing was stored and nobody is left to answer.
            raise ApiError(
                400, "CLIENT_DISCONNECTED", "The client closed the connection before sending the body"
            )


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _bearer_may_ingest(state: AppState, authorization: str | None) -> bool:
    auth = authorization or ""
    if not auth.lower().startswith("bearer "):
        return False
    principal = await state.tokens.resolve(auth[7:].strip())
    return principal is not None and "leads:create" in principal.scopes


FAILURES = frozenset({400, 401, 403, 413, 415})


async def _accept(
    state: AppState, headers: dict[str, str], receive: Receive
) -> tuple[CaptureRequest, CaptureCampaign]:
    """Everything a client can get wrong: body, campaign, token, origin (failures count to lock-out)."""
    settings = state.settings
    if not _is_json(headers.get("content-type")):
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json")
    raw = await _read_body(receive, headers.get("content-length"), settings.max_body_bytes)
    try:
        body = CaptureRequest.model_validate_json(
            raw, context={"phone_region": settings.default_phone_region}
        )
    except ValidationError as exc:
        raise validation_error(exc.errors(include_input=False)) from None
    campaign = await state.campaigns.get(body.campaign_id)
    if campaign is None:
        raise ApiError(404, "CAMPAIGN_NOT_FOUND", "Unknown campaign", field="campaign_id")
    if campaign.status != "active":
        raise ApiError(409, "CAMPAIGN_INACTIVE", f"The campaign is {campaign.status}", field="campaign_id")
    if not campaign.origin_ok(headers.get("origin")) and not same_origin(headers):
        raise ApiError(403, "ORIGIN_NOT_ALLOWED", "This origin may not submit to this campaign")
    if not campaign.token_ok(headers.get("x-campaign-token")) and not await _bearer_may_ingest(
        state, headers.get("authorization")
    ):
        raise ApiError(401, "INVALID_CAMPAIGN_TOKEN", "X-Campaign-Token is missing or wrong")
    return body, campaign


def same_origin(headers: dict[str, str]) -> bool:
    """The browser page is one Leadflow served itself (the hosted form ``/f/{id}``): Origin's host
    equals the request's Host. Such a request is allowed whatever the campaign's origins."""
    origin, host = headers.get("origin"), headers.get("host")
    if not origin or not host or "://" not in origin:
        return False
    scheme, _, netloc = origin.lower().partition("://")
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    return netloc.removesuffix(default) == host.lower().removesuffix(default)


def _reject_bots(body: CaptureRequest, settings: Settings) -> None:
    """Honeypot, minimum fill time and (optionally) disposable addresses. Rejected spam is counted only."""
    form = body.form_metadata
    reason = None
    if form.honeypot:
        reason = "honeypot"
    else:
        fill = form.fill_time_seconds
        if fill is None and form.started_at is not None and form.timestamp is not None:
            fill = (form.timestamp - form.started_at).total_seconds()
        if fill is not None and fill < settings.bot_min_fill_seconds:
            reason = "too_fast"
    if reason is not None:
        metrics.CAPTURE["spam"].inc()
        metrics.SPAM[reason].inc()
        log.info("spam_rejected", reason=reason, campaign_id=body.campaign_id)
        raise ApiError(400, "SUBMISSION_REJECTED", "The submission was rejected as automated")
    if settings.reject_disposable_emails:
        domain = body.contact.email.rsplit("@", 1)[1]
        if classify_domain(domain) == "disposable":
            metrics.CAPTURE["spam"].inc()
            metrics.SPAM["disposable"].inc()
            raise ApiError(
                400, "DISPOSABLE_EMAIL", "Disposable e-mail addresses are not accepted", field="contact.email"
            )


@router.options("/leads", include_in_schema=False)
async def capture_preflight(request: Request) -> Response:
    origin = request.headers.get("origin")
    if not origin or not await state_of(request.app).campaigns.any_origin_allowed(origin):
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


SPOOLED_MESSAGE = "Lead accepted; it is stored as soon as the database is reachable again"


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
        "role); campaigns with allowed origins reject other browser `Origin`s."
    ),
    responses={
        **responses(400, 401, 403, 404, 409, 413, 415, 429, 503),
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
    # capture_lead's, which CaptureFastPath also calls without FastAPI's routing (see there).
    return await capture_lead(state_of(request.app), request.scope, request.receive)


# The request headers the capture path reads (ASGI header names are lower case).
_CAPTURE_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"x-campaign-token",
        b"idempotency-key",
        b"origin",
        b"authorization",
        b"host",
    }
)
IDEMPOTENCY_KEY_MAX = 255


def _headers(scope: Scope) -> dict[str, str]:
    """The capture path's headers from the ASGI scope (the first of repeated ones, like Starlette)."""
    found: dict[str, str] = {}
    for key, value in scope["headers"]:
        if key in _CAPTURE_HEADERS:
            found.setdefault(key.decode("latin-1"), value.decode("latin-1"))
    return found


async def capture_lead(state: AppState, scope: Scope, receive: Receive) -> Response:
    """POST /v1/api/leads: from the raw request to the 201 (or the error, raised as ApiError).

    Errors carry the CORS headers too (a cross-origin form script must read the field of a 400 and
    the Retry-After of a 429), except ORIGIN_NOT_ALLOWED: that one the browser must refuse."""
    try:
        return await _capture_lead(state, scope, receive)
    except ApiError as exc:
        metrics.count_capture_error(exc.status, exc.error)
        origin = _headers(scope).get("origin")
        if origin and exc.error != "ORIGIN_NOT_ALLOWED":
            exc.headers = {**_cors(origin), **(exc.headers or {})}
        raise
    except ValidationError:
        metrics.CAPTURE["invalid"].inc()
        raise


def _cors(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Vary": "Origin",
        "Access-Control-Expose-Headers": CORS_EXPOSE,
    }


async def _capture_lead(state: AppState, scope: Scope, receive: Receive) -> Response:
    headers = _headers(scope)
    idempotency_key = headers.get("idempotency-key")
    if idempotency_key is not None and len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        # What FastAPI's Header(max_length=255) answers, before any other check.
        raise ApiError(400, "VALIDATION_ERROR", "Value is too long", field="Idempotency-Key")
    origin = headers.get("origin")
    settings = state.settings
    guard: Guard = state.guard
    ip = scope["state"].get("client_ip") or "unknown"
    await guard.raise_if_locked(ip)
    verdict = await guard.check_ip(ip)
    if not verdict.allowed:
        raise rate_limited(verdict, "per client address")
    try:
        body, campaign = await _accept(state, headers, receive)
    except ApiError as exc:
        if exc.status in FAILURES and exc.error != "CLIENT_DISCONNECTED":
            await guard.record_failure(ip)
        raise
    verdict = await guard.check_campaign(campaign.id)
    if not verdict.allowed:
        raise rate_limited(verdict, "per campaign")
    _reject_bots(body, settings)
    key = idempotency_key.strip() if idempotency_key else None

    prepared = prepare(
        body, campaign, state.cipher, state.catalog, ip if ip != "unknown" else None, key or None
    )
    # First-touch UTM has no column: it starts the lead's enrichment JSON, which the worker extends
    # (pipeline.processing keeps it). Every row carries the key, so a batch's INSERT has one shape.
    touch = body.tracking.first_touch.stored() if body.tracking.first_touch else None
    prepared.values["enrichment"] = {"first_touch": touch} if touch else None
    outcome = await state.writer.submit(prepared)

    cors = _cors(origin) if origin else None
    metrics.CAPTURE[outcome.kind].inc()
    if outcome.kind == "duplicate":
        hours = settings.dedup_window_hours
        raise ApiError(
            409,
            "DUPLICATE_SUBMISSION",
            f"This person already submitted this campaign's form in the last {hours:g} hours",
            field="contact.email",
            headers=cors,
            extra={"lead_id": outcome.public_id},
        )
    if outcome.kind == "key_conflict":
        raise ApiError(
            409,
            "IDEMPOTENCY_KEY_REUSED",
            "This Idempotency-Key was already used for a different submission",
            field="Idempotency-Key",
            headers=cors,
        )
    response = CaptureResponse(
        lead_id=outcome.public_id,
        message=SPOOLED_MESSAGE if outcome.kind == "spooled" else "Lead captured successfully",
        next_steps={
            "expected_response_time": RESPONSE_TIMES.get(outcome.grade, "24 hours"),
            "contact_method": "email",
            "tracking_enabled": outcome.tracking_enabled,
        },
    )
    headers_out = dict(cors or {})
    if outcome.kind == "replay":
        headers_out["Idempotent-Replayed"] = "true"
    return json_response(response.model_dump(), 202 if outcome.kind == "spooled" else 201, headers_out)


CAPTURE_PATH = "/v1/api/leads"


class CaptureFastPath:
    """Pure ASGI middleware: ``POST /v1/api/leads`` straight to :func:`capture_lead`.

    The capture endpoint is the public, high-volume one. Through FastAPI every request also pays for
    route matching over all routes, dependency resolution (the header parameters), a Request object
    and two exception-handling layers, which measured as much CPU as the capture work itself. This
    middleware sits inside RequestContextMiddleware (request id, client address, access log) and
    ServerErrorMiddleware (unexpected errors still answer 500 in the error shape), matches only that
    method and exact path, and turns ApiError and ValidationError into the same answers as the
    application's exception handlers. Everything else, the CORS pre-flight included, goes on to the
    router; the FastAPI route stays for the OpenAPI document and calls the same function.
    """

    def __init__(self, app: ASGIApp, route: BaseRoute | None = None) -> None:
        self.app = app
        self.route = route  # what the access log names (scope["route"]), as after routing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CAPTURE_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.route is not None:
            scope["route"] = self.route
        try:
            response = await capture_lead(scope_state(scope), scope, receive)
        except ApiError as exc:
            note_refusal(scope, exc.status, exc.error)
            response = exc.response()
        except ValidationError as exc:
            response = validation_error(exc.errors(include_input=False)).response()
        except Exception as exc:
            if not database_unreachable(exc):
                raise
            # e.g. a campaign this process never loaded, while the database is down (as the handlers do)
            log.warning("database_unavailable", exc_type=type(exc).__name__)
            response = database_unavailable().response()
        await response(scope, receive, send)


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
    request: Request, lead_id: LeadId, principal: Principal = Depends(require("leads:status"))
) -> Response:
    state_of(request.app).audit.add(Actor.from_request(request, principal), "lead.status", "lead", lead_id)
    _check_lead_id(lead_id)
    scope = _scope(principal)
    reader = state_of(request.app).point_reader
    if reader is not None:
        body = service.status_body(status_row_sqlite(reader, lead_id), scope)
    else:
        spool = state_of(request.app).writer.spool
        if spool is not None and spool.holds(lead_id):
            raise ApiError(
                503, "SERVICE_UNAVAILABLE", "The lead is accepted and not stored yet; retry shortly",
                headers={"Retry-After": "5"},
            )  # fmt: skip
        async with state_of(request.app).engine.connect() as conn:
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
    principal: Principal = Depends(require("leads:read")),
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
        email_hash=_email_hash(state_of(request.app), email) if email is not None else None,
    )
    before = decode_cursor(cursor)
    async with state_of(request.app).engine.connect() as conn:
        result = await service.page(conn, state_of(request.app).cipher, flt, before, limit)
    await record_now(
        state_of(request.app).engine,
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
    request: Request, lead_id: LeadId, principal: Principal = Depends(require("leads:read"))
) -> LeadDetail:
    _check_lead_id(lead_id)
    async with state_of(request.app).engine.connect() as conn:
        result = await service.detail(
            conn, state_of(request.app).cipher, lead_id, only_assigned_to=_scope(principal)
        )
    await record_now(
        state_of(request.app).engine, Actor.from_request(request, principal), "lead.read", "lead", lead_id
    )
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
    request: Request,
    lead_id: LeadId,
    body: LeadUpdate,
    principal: Principal = Depends(require("leads:write")),
) -> LeadDetail:
    _check_lead_id(lead_id)
    state = state_of(request.app)
    scope = _scope(principal)
    actor = Actor.from_request(request, principal)
    async with state.engine.begin() as conn:
        crm = await service.update(
            conn,
            state.cipher,
            lead_id,
            body,
            actor,
            only_assigned_to=scope,
            settings=state.settings,
            analytics=state.analytics,
        )
    if crm or body.do_not_sell:
        state.wake_worker()
    async with state.engine.connect() as conn:
        return await service.detail(conn, state.cipher, lead_id, only_assigned_to=scope)


def extra_schemas() -> dict[str, Any]:
    """Component schemas referenced by hand-written request bodies."""
    schema = CaptureRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"CaptureRequest": schema, **defs}
