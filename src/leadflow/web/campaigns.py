"""Campaigns (``/campaigns``): the list with each campaign's KPIs, and create/edit through the same
campaign service, scopes and audit actions as ``/v1/api/campaigns``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from leadflow.campaigns import analytics, service
from leadflow.campaigns.models import CAMPAIGN_STATUSES, CAMPAIGN_TYPES
from leadflow.campaigns.schemas import CampaignCreate, CampaignOut, CampaignUpdate
from leadflow.errors import ApiError, validation_error
from leadflow.integrations.registry import ConnectorName
from leadflow.kit.clock import utcnow
from leadflow.kit.state import AfterCommit, AfterCommitDep, AppState, AppStateDep, ReadConn, WriteConn
from leadflow.security.audit import record
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import actor, count_view, page_router, require_page
from leadflow.web.render import render

router = page_router()
# The signed-in user with the API scope the page needs (web/auth.py PageUser, typed for mypy).
CampaignReader = Annotated[SessionPrincipal, Depends(require_page("campaigns:read"))]
CampaignWriter = Annotated[SessionPrincipal, Depends(require_page("campaigns:write"))]


@dataclass(frozen=True, slots=True)
class CampaignChange:
    """A campaign change from a page: the write connection (committed by the boundary), who acts, and
    the campaign cache to drop after the commit — the page form of the API's ``CampaignChange``."""

    request: Request
    user: SessionPrincipal
    conn: AsyncConnection
    after: AfterCommit
    state: AppState

    async def done(self, action: str, campaign_id: str, details: dict[str, Any] | None = None) -> None:
        """The change's audit entry (same transaction) and the cache drop after the commit."""
        await record(self.conn, actor(self.request, self.user), action, "campaign", campaign_id, details)
        self.after.add(self.state.campaigns.invalidate, campaign_id)


async def campaign_change(
    request: Request, user: CampaignWriter, conn: WriteConn, after: AfterCommitDep, state: AppStateDep
) -> CampaignChange:
    return CampaignChange(request, user, conn, after, state)


CampaignEdit = Annotated[CampaignChange, Depends(campaign_change)]

CONNECTORS = tuple(str(name) for name in ConnectorName)
# Text fields of the form, as sent to the service (an empty field clears the value).
TEXT = ("name", "description", "start_date", "end_date", "budget", "target_leads", "landing_page_url")
LISTS = ("services", "allowed_origins", "notification_emails")  # one entry per line


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.replace(",", "\n").splitlines() if line.strip()]


def form_values(form: FormData, current: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The campaign form as the API's JSON body: empty text is null, lists one per line, connector
    switches (default/on/off) merged into the campaign's other per-connector settings."""
    values: dict[str, Any] = {}
    for name in (*TEXT, "campaign_type", "status"):
        if name in form:
            text = str(form[name]).strip()
            values[name] = text or None
    for name in LISTS:
        if name in form:
            values[name] = _lines(str(form[name]))
    values["auto_assign"] = form.get("auto_assign") == "on"
    integrations = {k: dict(v) for k, v in (current or {}).items()}
    for name in CONNECTORS:
        switch = str(form.get(f"connector_{name}", "default"))
        settings = integrations.get(name, {})
        settings.pop("enabled", None)
        if switch in ("on", "off"):
            settings["enabled"] = switch == "on"
        if settings:
            integrations[name] = settings
        else:
            integrations.pop(name, None)
    values["integrations"] = integrations
    return values


def _form_context(campaign: CampaignOut | None, values: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = campaign.model_dump(mode="json") if campaign is not None else {}
    data.update(values or {})
    switches = {}
    for name in CONNECTORS:
        enabled = (data.get("integrations") or {}).get(name, {}).get("enabled")
        switches[name] = "default" if enabled is None else ("on" if enabled else "off")
    shown = {k: ("" if v is None else v) for k, v in data.items()}
    for name in LISTS:
        shown[name] = "\n".join(str(x) for x in data.get(name) or [])
    return {
        "campaign": campaign,
        "values": shown,
        "switches": switches,
        "connectors": CONNECTORS,
        "types": CAMPAIGN_TYPES,
        "statuses": CAMPAIGN_STATUSES,
    }


def _problem(exc: ValidationError | ApiError) -> str:
    error = exc if isinstance(exc, ApiError) else validation_error(exc.errors(include_input=False))
    return f"{error.field}: {error.message}" if error.field else error.message


@router.get("/campaigns")
async def campaign_list(request: Request, user: CampaignReader, conn: ReadConn) -> Response:
    count_view(request, user, "campaign.list", "campaign")
    start, end = analytics.dashboard_period(None, None, utcnow().date())
    figures = await analytics.dashboard(conn, None, start, end)
    return render(
        request,
        "campaigns.html",
        {
            "title": "Campaigns",
            "kpis": figures.campaigns,
            "period": figures.period,
            "can_write": "campaigns:write" in user.scopes,
            "can_analyse": "analytics:read" in user.scopes,
        },
    )


@router.get("/campaigns/new")
async def new_campaign_form(request: Request, user: CampaignWriter) -> Response:
    context = _form_context(None, {"status": "active", "campaign_type": "service", "auto_assign": True})
    return render(request, "campaign_form.html", {"title": "New campaign", **context})


@router.post("/campaigns/new")
async def create_campaign(edit: CampaignEdit) -> Response:
    request, conn = edit.request, edit.conn
    form = await request.form()
    values = form_values(form)
    values["id"] = str(form.get("id", "")).strip()
    values["generate_token"] = form.get("generate_token") == "on"
    try:
        created = await service.create(conn, CampaignCreate.model_validate(values))
    except (ValidationError, ApiError) as exc:
        context = _form_context(None, values)
        context["error"] = _problem(exc)
        return render(request, "campaign_form.html", {"title": "New campaign", **context}, status_code=400)
    await edit.done("campaign.create", created.id)
    if created.token:
        return _token_page(request, created.id, created.token)
    return RedirectResponse(f"/campaigns/{created.id}", status_code=303)


@router.get("/campaigns/{campaign_id}")
async def edit_campaign_form(
    request: Request, campaign_id: str, user: CampaignReader, conn: ReadConn
) -> Response:
    count_view(request, user, "campaign.read", "campaign", campaign_id)
    campaign = service.to_out(await service.get_or_404(conn, campaign_id))
    context = _form_context(campaign)
    context["can_write"] = "campaigns:write" in user.scopes
    context["saved"] = request.query_params.get("saved") == "1"
    return render(request, "campaign_form.html", {"title": campaign.name, **context})


@router.post("/campaigns/{campaign_id}")
async def update_campaign(campaign_id: str, edit: CampaignEdit) -> Response:
    request, conn = edit.request, edit.conn
    current = service.to_out(await service.get_or_404(conn, campaign_id))
    form = await request.form()
    values = form_values(form, current.integrations)
    try:
        body = CampaignUpdate.model_validate(values)
        await service.update(conn, campaign_id, body)
    except (ValidationError, ApiError) as exc:
        context = _form_context(current, values)
        context["error"] = _problem(exc)
        context["can_write"] = True
        return render(request, "campaign_form.html", {"title": current.name, **context}, status_code=400)
    await edit.done("campaign.update", campaign_id, {"fields": sorted(body.model_fields_set)})
    return RedirectResponse(f"/campaigns/{campaign_id}?saved=1", status_code=303)


@router.post("/campaigns/{campaign_id}/token")
async def rotate_token(campaign_id: str, edit: CampaignEdit) -> Response:
    result = await service.set_token(edit.conn, campaign_id, enabled=True)
    await edit.done("campaign.token_rotate", campaign_id)
    assert result.token is not None
    return _token_page(edit.request, campaign_id, result.token)


def _token_page(request: Request, campaign_id: str, token: str) -> Response:
    return render(
        request,
        "campaign_token.html",
        {"title": "Campaign token", "campaign_id": campaign_id, "token": token},
        headers={"Cache-Control": "no-store"},
    )
