"""Manual entry (``/leads/new``): a lead taken by phone or at an event, through the capture core.

The same validation, de-duplication, scoring and pipeline as ``POST /v1/api/leads``
(:mod:`leadflow.leads.entry`); a duplicate shows a link to the existing lead; who entered the lead is
recorded. A caller without an e-mail address is accepted when a phone number is given. Field errors
are shown next to their field. Scope ``leads:create``, as for capturing through the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import RedirectResponse, Response

from leadflow.campaigns import repository as campaigns_repo
from leadflow.kit.state import AppState, AppStateDep
from leadflow.leads import entry
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import actor, page_router, require_page
from leadflow.web.render import render

router = page_router()
Creator = Annotated[SessionPrincipal, Depends(require_page("leads:create"))]


async def _form(
    request: Request,
    state: AppState,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    duplicate: str | None = None,
    status_code: int = 200,
) -> Response:
    async with state.engine.connect() as conn:
        campaigns = [c for c in await campaigns_repo.list_all(conn) if c.status == "active"]
    return render(
        request,
        "new_lead.html",
        {
            "title": "New lead",
            "values": values,
            "errors": errors or {},
            "duplicate": duplicate,
            "campaigns": campaigns,
            "sources": entry.STAFF_SOURCES,
            "fields": entry.FIELDS,
        },
        status_code=status_code,
    )


@router.get("/leads/new")
async def new_lead_page(request: Request, state: AppStateDep, user: Creator) -> Response:
    return await _form(request, state, {"source": "phone"})


@router.post("/leads/new")
async def new_lead(request: Request, state: AppStateDep, user: Creator) -> Response:
    form = await request.form()
    values = {k: v[:5000] for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    return await submit(request, state, user, values)


async def submit(
    request: Request, state: AppState, user: SessionPrincipal, values: dict[str, str]
) -> Response:
    campaign_id = values.get("campaign_id", "")
    source = values.get("source", "")
    try:
        if source not in entry.STAFF_SOURCES:
            raise entry.EntryRefused({"source": "Choose phone, manual or event."})
        core = entry.Core.of(state)
        found = entry.validate(values, campaign_id, phone_region=core.phone_region, form_type="manual_entry")
        campaign = entry.check_campaign(await state.campaigns.get(campaign_id) if campaign_id else None)
        outcome = await entry.enter(core, found, campaign, source=source, actor=actor(request, user))
    except entry.EntryRefused as exc:
        return await _form(request, state, values, exc.errors, status_code=400)
    if outcome.kind == "duplicate":
        return await _form(request, state, values, duplicate=outcome.public_id, status_code=409)
    state.wake_worker()
    return RedirectResponse(f"/leads/{outcome.public_id}?done=created", status_code=303)
