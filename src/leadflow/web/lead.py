"""The lead page (``/leads/{lead_id}``) and its actions.

The page shows what the API's detail shows (contact, campaign, source and UTM, enrichment, the score
with its per-rule breakdown, the timeline) plus the lead's deliveries. It is scoped and audited like the
API's ``GET /v1/api/leads/{id}``: a sales user opens only leads assigned to them (any other answers the
same 404 as the API), and every view writes a ``lead.read`` audit entry.

Every action is a form post (with the CSRF token) that goes through the service the API uses —
:func:`leadflow.leads.service.change`, i.e. ``leads.changes`` ``plan``/``apply`` with the API's
transition rules — then redirects back to the page (post/redirect/get). Reassigning notifies the new
owner like a fresh assignment. Admins retry a dead delivery (the jobs service), export, anonymise and
erase (the privacy services), with the API's audit entries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.background import BackgroundTasks
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from leadflow.db import scrub_after_erase
from leadflow.errors import ApiError
from leadflow.kit.ids import LEAD_ID_RE
from leadflow.kit.state import AppState, AppStateDep, WriteConn
from leadflow.leads import changes, service
from leadflow.leads.changes import LOGGED, TRANSITIONS, LeadChange
from leadflow.pipeline import service as jobs
from leadflow.privacy import service as privacy
from leadflow.routing import repository as routing_repo
from leadflow.routing import service as routing
from leadflow.security.audit import record
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import PageError, actor, audit_view, page_router, require_page
from leadflow.web.render import render

router = page_router()
Admin = Annotated[SessionPrincipal, Depends(require_page("admin"))]
Reader = Annotated[SessionPrincipal, Depends(require_page("leads:read"))]
Writer = Annotated[SessionPrincipal, Depends(require_page("leads:write"))]
LeadId = Annotated[str, Path(max_length=40)]
NOTE_MAX = 5000
DONE = {
    "status": "Status changed.",
    "assigned": "Assignment saved; the new owner is notified.",
    "unassigned": "The lead is unassigned.",
    "note": "Note added.",
    "logged": "Activity logged.",
    "follow_up": "Follow-up saved.",
    "deal": "Deal value saved.",
    "retried": "The delivery is queued again.",
    "anonymised": "The lead's personal data is removed.",
    "created": "Lead saved. It is being scored and routed.",
}


def _lead_id(lead_id: str) -> str:
    if not LEAD_ID_RE.match(lead_id):
        raise ApiError(404, "LEAD_NOT_FOUND", "Lead not found", field="lead_id")
    return lead_id


@router.get("/leads/{lead_id}")
async def lead_page(
    request: Request,
    lead_id: LeadId,
    state: AppStateDep,
    user: Reader,
    done: str = "",
) -> Response:
    scope = service.only_assigned_to(user)
    async with state.reads() as conn:  # point reads (SQLite: inline, beside the engine's connection)
        detail = await service.detail(conn, state.cipher, _lead_id(lead_id), only_assigned_to=scope)
        deliveries = await service.deliveries(conn, lead_id)
        members = await routing.members_with_load(conn, active=True)
    await audit_view(request, user, "lead.read", "lead", lead_id)
    return render(
        request,
        "lead.html",
        {
            "title": f"{detail.first_name} {detail.last_name}",
            "lead": detail,
            "deliveries": deliveries,
            "members": members,
            "load_cap": routing.MENU_LOAD_CAP,
            "next_statuses": sorted(TRANSITIONS.get(detail.status, ())),
            "logged": LOGGED,
            "may_write": "leads:write" in user.scopes,
            "is_admin": "admin" in user.scopes,
            "notice": DONE.get(done),
            "breakdown": _breakdown(detail.score_breakdown),
        },
    )


def _breakdown(stored: dict[str, Any] | None) -> list[dict[str, Any]]:
    rules = (stored or {}).get("rules")
    return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


@dataclass(frozen=True, slots=True)
class Action:
    """What a form of the lead page asks for: the change, the fields it names, the notice after it."""

    change: LeadChange
    fields: list[str]
    done: str
    owner: routing_repo.MemberRow | None = None  # assign: the team member who gets the lead


def _text(form: FormData, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _note(form: FormData) -> str | None:
    value = form.get("note")
    if not isinstance(value, str) or not value.strip():
        return None
    if len(value) > NOTE_MAX:
        raise ApiError(400, "VALIDATION_ERROR", f"A note has at most {NOTE_MAX} characters", field="note")
    return value.strip()


def _deal(form: FormData) -> Decimal | None:
    text = _text(form, "deal_value", 20).replace(",", "")
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if value < 0 or value >= Decimal(10) ** 10 or value != value.quantize(Decimal("0.01")):
        raise ApiError(
            400, "VALIDATION_ERROR", "Enter the deal value as an amount, e.g. 7500", field="deal_value"
        )
    return value


def _status(form: FormData) -> Action:
    status = _text(form, "status", 20)
    if not status:
        raise ApiError(400, "VALIDATION_ERROR", "Choose a status", field="status")
    deal, note = _deal(form), _note(form)
    fields = ["status"] + (["deal_value"] if deal is not None else []) + (["note"] if note else [])
    return Action(
        LeadChange(status=status, deal_value=deal if deal is not None else changes.UNSET, note=note),
        fields,
        "status",
    )


def _add_note(form: FormData) -> Action:
    note = _note(form)
    if note is None:
        raise ApiError(400, "VALIDATION_ERROR", "Write a note first", field="note")
    return Action(LeadChange(note=note), ["note"], "note")


def _log(form: FormData) -> Action:
    kind = _text(form, "activity_type", 40)
    logged = next((t for t in LOGGED if t == kind), None)
    if logged is None:
        raise ApiError(400, "VALIDATION_ERROR", "Choose what to log", field="activity_type")
    note = _note(form)
    return Action(
        LeadChange(logged=logged, note=note), ["activity_type"] + (["note"] if note else []), "logged"
    )


def _follow_up(form: FormData) -> Action:
    when = follow_up_moment(_text(form, "follow_up", 40), _text(form, "tz_offset", 6))
    return Action(LeadChange(follow_up_date=when), ["follow_up_date"], "follow_up")


def _deal_value(form: FormData) -> Action:
    return Action(LeadChange(deal_value=_deal(form)), ["deal_value"], "deal")


# The lead page's change forms, by the last part of their URL (``POST /leads/{id}/<action>``).
ACTIONS: dict[str, Callable[[FormData], Action]] = {
    "status": _status,
    "note": _add_note,
    "activity": _log,
    "follow-up": _follow_up,
    "deal": _deal_value,
}


async def _assign(conn: AsyncConnection, form: FormData) -> Action:
    chosen = _text(form, "member_id", 20)
    owner = None
    if chosen:
        owner = await routing_repo.get_member(conn, int(chosen)) if chosen.isdigit() else None
        if owner is None or not owner.active:
            raise ApiError(400, "VALIDATION_ERROR", "Choose an active team member", field="member_id")
    email = owner.email if owner is not None else None
    return Action(
        LeadChange(assigned_to=email), ["assigned_to"], "assigned" if owner else "unassigned", owner
    )


def follow_up_moment(local: str, offset_minutes: str) -> datetime | None:
    """A ``datetime-local`` value in the browser's zone (``offset_minutes``: JavaScript's
    ``getTimezoneOffset()``, minutes behind UTC; absent: UTC) as a UTC moment; empty clears it."""
    if not local:
        return None
    try:
        moment = datetime.fromisoformat(local)
        offset = int(offset_minutes) if offset_minutes else 0
    except ValueError as exc:
        raise ApiError(400, "VALIDATION_ERROR", "Enter a date and time", field="follow_up") from exc
    if moment.tzinfo is not None or not -900 <= offset <= 900:
        raise ApiError(400, "VALIDATION_ERROR", "Enter a date and time", field="follow_up")
    return (moment + timedelta(minutes=offset)).replace(tzinfo=UTC)


# -- admins -------------------------------------------------------------------------------------------
@router.post("/leads/{lead_id}/deliveries/{job_id}/retry")
async def retry_delivery(
    request: Request,
    lead_id: LeadId,
    job_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    state: AppStateDep,
    user: Admin,
    conn: WriteConn,
) -> Response:
    if not any(d.job_id == job_id for d in await service.deliveries(conn, _lead_id(lead_id))):
        raise PageError(404, "Not found", "This lead has no such delivery.", "JOB_NOT_FOUND")
    await jobs.retry(conn, job_id)
    await record(conn, actor(request, user), "job.retry", "job", str(job_id))
    tasks = BackgroundTasks()
    tasks.add_task(state.wake_worker)
    return RedirectResponse(f"/leads/{lead_id}?done=retried", status_code=303, background=tasks)


@router.post("/leads/{lead_id}/anonymise")
async def anonymise(
    request: Request, lead_id: LeadId, state: AppStateDep, user: Admin, conn: WriteConn
) -> Response:
    await privacy.anonymize(conn, state.cipher, _lead_id(lead_id), user.actor)
    await record(conn, actor(request, user), "lead.anonymize", "lead", lead_id)
    return RedirectResponse(f"/leads/{lead_id}?done=anonymised", status_code=303)


@router.post("/leads/{lead_id}/erase")
async def erase(
    request: Request, lead_id: LeadId, state: AppStateDep, user: Admin, conn: WriteConn
) -> Response:
    """Erase the person (every lead with this lead's e-mail address), as ``POST /v1/api/privacy/erase``."""
    email = await _person(conn, state, lead_id)
    who = actor(request, user)
    result = await privacy.erase(
        conn, state.cipher, state.settings, email, "workspace_request", who.request_id
    )
    deleted = {"leads_deleted": result.leads_deleted, "remote": result.remote_deletions_queued}
    await record(conn, who, "privacy.erase", "person", None, {**deleted, "lead_id": lead_id})
    tasks = BackgroundTasks()
    tasks.add_task(scrub_after_erase, state.engine)
    tasks.add_task(state.wake_worker)
    return RedirectResponse(f"/leads?erased={result.leads_deleted}", status_code=303, background=tasks)


async def _person(conn: AsyncConnection, state: AppState, lead_id: str) -> str:
    """The e-mail address of the lead's person (the privacy services work per person)."""
    return (await service.detail(conn, state.cipher, _lead_id(lead_id))).email


@router.get("/leads/{lead_id}/export.json")
async def export_person(
    request: Request, lead_id: LeadId, state: AppStateDep, user: Admin, conn: WriteConn
) -> Response:
    """Everything about the person (right of access), as ``GET /v1/api/privacy/export``; audited."""
    data = await privacy.export(conn, state.cipher, await _person(conn, state, lead_id))
    shown = {"lead_ids": [lead["lead_id"] for lead in data["leads"]]}
    await record(conn, actor(request, user), "privacy.export", "person", None, shown)
    return Response(
        json.dumps(data, indent=2, default=str),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{lead_id}-export.json"'},
    )


@router.post("/leads/{lead_id}/{action}")
async def change_lead(
    request: Request,
    lead_id: LeadId,
    action: Annotated[str, Path(max_length=20)],
    state: AppStateDep,
    user: Writer,
    conn: WriteConn,
) -> Response:
    """One of the lead page's change forms, applied like ``PATCH /v1/api/leads/{id}``."""
    form = await request.form()
    if action == "assign":
        asked = await _assign(conn, form)
    elif action in ACTIONS:
        asked = ACTIONS[action](form)
    else:
        raise PageError(404, "Not found", "There is no such action.", "NOT_FOUND")
    row = await service.locked(conn, _lead_id(lead_id), service.only_assigned_to(user))
    await service.change(
        conn,
        state.cipher,
        row,
        asked.change,
        actor(request, user),
        fields=asked.fields,
        settings=state.settings,
        analytics=state.analytics,
        owner=asked.owner,
    )
    tasks = BackgroundTasks()
    tasks.add_task(state.wake_worker)  # after the commit: jobs a change queued run now
    scope = service.only_assigned_to(user)
    if scope is not None and asked.change.assigned_to not in (changes.UNSET, scope):
        return RedirectResponse("/", status_code=303, background=tasks)  # handed on: no longer theirs
    return RedirectResponse(f"/leads/{lead_id}?done={asked.done}", status_code=303, background=tasks)
