"""Privacy endpoints: access, erasure, anonymisation, consent changes and one-click unsubscribe."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response

from leadflow.db import scrub_after_erase
from leadflow.errors import ApiError, json_response, responses
from leadflow.kit.ids import LEAD_ID_RE
from leadflow.kit.state import AfterCommitDep, AppStateDep, ReadConn, WriteConn
from leadflow.leads.schemas import LeadDetail
from leadflow.privacy import consent, service
from leadflow.privacy.unsubscribe import ONE_CLICK_BODY, LinkError, page
from leadflow.security.audit import Actor, AdminChange, Change, change_dependency, record

router = APIRouter(prefix="/v1/api", tags=["privacy"])
public_router = APIRouter(prefix="/v1", tags=["privacy"])


class ErasureRequest(BaseModel):
    email: str = Field(max_length=320, examples=["john.doe@company.com"])
    reason: str = Field("data_subject_request", max_length=50, examples=["gdpr_article_17"])


class ErasureResponse(BaseModel):
    leads_deleted: int = Field(examples=[2])
    remote_deletions_queued: list[str] = Field(
        examples=[["hubspot", "mailchimp"]], description="Connected tools asked to delete their copy"
    )
    tombstone: bool = Field(True, description="Only the blind index is kept, to flag a later re-import")
    not_erased: dict[str, str] = Field(
        default_factory=dict,
        description="Configured tools that are not asked to delete anything, and why",
        examples=[
            {
                "ga4": "GA4 events carry no personal data (no name, e-mail, phone, company or message; "
                "a pseudonymous client id only), so nothing is erased there"
            }
        ],
    )


class ConsentRequest(BaseModel):
    email: str = Field(max_length=320, examples=["john.doe@company.com"])
    action: Literal["withdraw", "grant", "do_not_sell", "allow_sale"] = Field(
        description="withdraw: consent to marketing withdrawn (GDPR Art. 7(3)); grant: consent given "
        "again; do_not_sell: opt out of sale/sharing (CCPA); allow_sale: that opt-out revoked",
        examples=["withdraw"],
    )
    note: str | None = Field(
        None,
        max_length=200,
        description="How the person asked (kept in the history; no personal data)",
        examples=["Asked by phone"],
    )


class ConsentResponse(BaseModel):
    action: str = Field(examples=["withdraw"])
    lead_ids: list[str] = Field(examples=[["lead_abc123def456"]], description="The person's leads changed")
    remote_unsubscribes_queued: list[str] = Field(
        examples=[["mailchimp", "sendgrid"]],
        description="Connected e-mail tools asked to unsubscribe/suppress the address (within minutes)",
    )
    at: datetime


@router.get(
    "/privacy/export",
    summary="Export everything about a person (right of access)",
    description="Every lead of this e-mail address with activities, consents and enrichment, and the "
    "person's consent history (`consent_history`: each form's consent, then every withdrawal, grant or "
    "do-not-sell change with time, channel and actor), as JSON. Scope `admin`; audited.",
    responses=responses(400, 401, 403),
)
async def export(
    email: Annotated[str, Query(max_length=320, examples=["john.doe@company.com"])], change: AdminChange
) -> dict[str, Any]:
    data = await service.export(change.conn, change.state.cipher, email)
    await change.record(
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
async def erase(body: ErasureRequest, change: AdminChange) -> ErasureResponse:
    state = change.state
    result = await service.erase(
        change.conn, state.cipher, state.settings, body.email, body.reason, change.actor.request_id
    )
    await change.record(
        "privacy.erase",
        "person",
        None,
        {
            "leads_deleted": result.leads_deleted,
            "remote": result.remote_deletions_queued,
            "reason": body.reason,
        },
    )
    change.after.add(scrub_after_erase, state.engine)
    change.after.add(state.wake_worker)
    return ErasureResponse(
        leads_deleted=result.leads_deleted,
        remote_deletions_queued=result.remote_deletions_queued,
        not_erased=result.notes,
    )


@router.post(
    "/privacy/consent",
    response_model=ConsentResponse,
    summary="Withdraw or give consent, opt out of sale/sharing (staff)",
    description="Records a consent change a person asked for (by phone, letter, e-mail...) on every lead "
    "of this e-mail address, with time, channel and actor in the consent history (see the export). "
    "`withdraw` and `do_not_sell` stop the e-mail sequence and marketing syncs at once and queue "
    "unsubscribe/suppression at the connected e-mail tools (Mailchimp, SendGrid). Scope "
    "`privacy:write` (admin, manager); audited.",
    responses=responses(400, 401, 403),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "withdraw": {"value": {"email": "john.doe@company.com", "action": "withdraw"}},
                        "ccpa": {
                            "value": {
                                "email": "john.doe@company.com",
                                "action": "do_not_sell",
                                "note": "Do-not-sell request by e-mail",
                            }
                        },
                    }
                }
            }
        }
    },
)
async def change_consent(
    body: ConsentRequest, change: Annotated[Change, Depends(change_dependency("privacy:write"))]
) -> ConsentResponse:
    state = change.state
    digest = service.email_hash(state.cipher, body.email)
    result = await consent.change(
        change.conn,
        state.cipher,
        state.settings,
        digest=digest,
        action=body.action,
        channel="api",
        actor=change.principal.actor,
        email=body.email.strip().lower(),
        request_id=change.actor.request_id,
        details={"note": body.note} if body.note else None,
    )
    await change.record(
        f"privacy.consent.{body.action}",
        "person",
        None,
        {"lead_ids": result.lead_ids, "remote": result.remote_unsubscribes_queued},
    )
    change.after.add(state.wake_worker)
    return ConsentResponse(
        action=result.action,
        lead_ids=result.lead_ids,
        remote_unsubscribes_queued=result.remote_unsubscribes_queued,
        at=result.at,
    )


# -- one-click unsubscribe (public; the link itself is the credential) ------------------------------
LINK_STATUS = {"invalid": 404, "expired": 410, "used": 410}
LINK_ERROR = {"invalid": "INVALID_LINK", "expired": "LINK_EXPIRED", "used": "LINK_ALREADY_USED"}
LINK_MESSAGE = {
    "invalid": "The unsubscribe link is not valid",
    "expired": "The unsubscribe link has expired",
    "used": "The unsubscribe link was already used",
}
TokenPath = Annotated[
    str,
    Path(
        max_length=200,
        description="The token from the e-mail's List-Unsubscribe link",
        examples=[
            "lead_abc123def456.1767225600.Zm9vYmFyYmF6cXV4.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlcw"
        ],
    ),
]
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


async def _head_of_body(request: Request, limit: int = 1024) -> bytes:
    """At most ``limit`` bytes of the body (the one-click body is 26 bytes); the rest is not read."""
    head = b""
    async for chunk in request.stream():
        head += chunk
        if len(head) >= limit:
            break
    return head[:limit]


def _page_responses(ok: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {200: ok, **responses(404, 410, 429)}


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _link_failure(request: Request, reason: str) -> Response:
    if _wants_html(request):
        return HTMLResponse(page(reason), status_code=LINK_STATUS[reason], headers=PAGE_HEADERS)
    return ApiError(LINK_STATUS[reason], LINK_ERROR[reason], LINK_MESSAGE[reason], field="token").response()


async def _guard(request: Request, state: AppStateDep) -> str:
    """Dependency: the client's address, past the per-IP rate limit (checked before a connection is
    taken); forged links count as failures towards the lock-out, like bad tokens."""
    from leadflow.security.ratelimit import rate_limited

    ip = request.scope.get("state", {}).get("client_ip") or "unknown"
    guard = state.guard
    await guard.raise_if_locked(ip)
    verdict = await guard.check_ip(ip)
    if not verdict.allowed:
        raise rate_limited(verdict, "requests from this address")
    return str(ip)


ClientIp = Annotated[str, Depends(_guard)]


@public_router.get(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="Unsubscribe: confirmation page",
    description="The page the e-mail's unsubscribe link opens. It changes nothing (mail scanners open "
    "links): it shows a button that POSTs to the same URL. 404 for a forged link, 410 for an expired "
    "or already used one (HTML pages, or the JSON error shape without `Accept: text/html`).",
    responses=_page_responses({"content": {"text/html": {}}, "description": "Confirmation page"}),
)
async def unsubscribe_page(
    request: Request, ip: ClientIp, token: TokenPath, state: AppStateDep, conn: ReadConn
) -> Response:
    from leadflow.kit.clock import utcnow
    from leadflow.privacy.repository import link_used
    from leadflow.privacy.unsubscribe import read_token

    try:
        link = read_token(state.settings.encryption_keys, token, utcnow())
    except LinkError as exc:
        if exc.reason == "invalid":
            await state.guard.record_failure(ip)
        return _link_failure(request, exc.reason)
    if await link_used(conn, link.token_hash):
        return _link_failure(request, "used")
    return HTMLResponse(page("confirm", action=str(request.url.path)), headers=PAGE_HEADERS)


@public_router.post(
    "/unsubscribe/{token}",
    summary="Unsubscribe (RFC 8058 one-click, or the confirmation page's button)",
    description="Withdraws the consent of the person the e-mail was sent to, on all their leads: the "
    "e-mail sequence stops and unsubscribe/suppression is queued at the connected e-mail tools. Mail "
    f"providers POST `{ONE_CLICK_BODY}` (form-encoded) without cookies or redirects. A link works once "
    "and expires after `UNSUBSCRIBE_LINK_DAYS`. Answers HTML with `Accept: text/html`, else JSON.",
    responses=_page_responses(
        {
            "description": "Unsubscribed",
            "content": {
                "application/json": {"example": {"success": True, "unsubscribed": True}},
                "text/html": {},
            },
        }
    ),
)
async def unsubscribe_post(
    request: Request,
    ip: ClientIp,
    token: TokenPath,
    state: AppStateDep,
    conn: WriteConn,
    after: AfterCommitDep,
) -> Response:
    body = (await _head_of_body(request)).decode("utf-8", "replace")
    channel: consent.Channel = "one_click" if ONE_CLICK_BODY in body else "unsubscribe_link"
    request_id = request.scope.get("state", {}).get("request_id")
    try:
        result = await consent.unsubscribe(conn, state.cipher, state.settings, token, channel, request_id)
        await record(
            conn,
            Actor("data subject", None, "api", ip, request_id),
            "privacy.unsubscribe",
            "person",
            None,
            {"via": channel, "lead_ids": result.lead_ids, "remote": result.remote_unsubscribes_queued},
        )
    except LinkError as exc:
        after.cancel()  # answered with a page, not raised: nothing of this request is kept
        if exc.reason == "invalid":
            await state.guard.record_failure(ip)
        return _link_failure(request, exc.reason)
    except IntegrityError:  # the same link used at the same moment by another request: that one won
        after.cancel()
        return _link_failure(request, "used")
    after.add(state.wake_worker)
    if _wants_html(request):
        return HTMLResponse(page("done"), headers=PAGE_HEADERS)
    return json_response({"success": True, "unsubscribed": True})


@router.post(
    "/leads/{lead_id}/anonymize",
    response_model=LeadDetail,
    summary="Anonymise a lead",
    description="Wipes personal fields but keeps campaign, score, grade, status and dates so analytics "
    "stay correct. Scope `admin`; audited.",
    responses=responses(401, 403, 404, 409),
)
async def anonymize(
    lead_id: Annotated[str, Path(examples=["lead_abc123def456"])], change: AdminChange
) -> LeadDetail:
    from leadflow.errors import ApiError
    from leadflow.leads import service as leads_service

    if not LEAD_ID_RE.match(lead_id):
        raise ApiError(404, "LEAD_NOT_FOUND", "Lead not found", field="lead_id")
    await service.anonymize(change.conn, change.state.cipher, lead_id, change.principal.actor)
    await change.record("lead.anonymize", "lead", lead_id)
    change.after.add(scrub_after_erase, change.state.engine)
    # Read in the same transaction: the answer is the anonymised lead this request commits.
    return await leads_service.detail(change.conn, change.state.cipher, lead_id)
