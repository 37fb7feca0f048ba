"""Team and routing (``/team``, admins): members with weight, capacity and current load, working hours,
regions and services, and the routing rules — read through ``routing.service`` like the admin API.

``/team/members/{id}`` edits a member's weight, capacity, active flag, working hours and regions through
``routing.service.update_member`` with the API's ``MemberUpdate`` validation, scope (``admin``) and audit
action (``team_member.update``); errors are shown next to their fields. Other changes (new members,
services, rules) go through ``/v1/api/team-members`` and ``/v1/api/routing-rules``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from leadflow.errors import ApiError, validation_error
from leadflow.kit.state import ReadConn
from leadflow.routing import service
from leadflow.routing.schemas import MemberOut, MemberUpdate
from leadflow.security.audit import Change
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import count_view, page_change, page_router, require_page
from leadflow.web.render import render

router = page_router()
SCOPE = "admin"  # the scope of /v1/api/team-members (routing/api.py): one policy
# The signed-in user with the API scope the page needs (web/auth.py PageUser, typed for mypy).
Admin = Annotated[SessionPrincipal, Depends(require_page(SCOPE))]
MemberChange = Annotated[Change, Depends(page_change(SCOPE))]
MemberId = Annotated[int, Path(ge=1, le=2**63 - 1)]
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@router.get("/team")
async def team_page(request: Request, user: Admin, conn: ReadConn) -> Response:
    count_view(request, user, "team.read", "team_member")
    members = (await service.list_members(conn)).items
    rules = (await service.list_rules(conn)).items
    saved = request.query_params.get("saved")
    return render(
        request,
        "team.html",
        {"title": "Team", "members": members, "rules": rules, "days": DAYS, "saved": saved},
    )


def member_form(form: FormData) -> dict[str, Any]:
    """The edit form as the API's ``PATCH /v1/api/team-members/{id}`` body (text left for the model to
    validate, so that its messages are the API's)."""
    body: dict[str, Any] = {
        "weight": str(form.get("weight", "")).strip(),
        "capacity": str(form.get("capacity", "")).strip(),
        "active": form.get("active") == "on",
        "regions": [
            r.strip() for r in str(form.get("regions", "")).replace(",", "\n").splitlines() if r.strip()
        ],
    }
    if form.get("hours") == "set":
        body["working_hours"] = {
            "timezone": str(form.get("timezone", "")).strip(),
            "days": [str(d) for d in form.getlist("days")],
            "start": str(form.get("start", "")).strip(),
            "end": str(form.get("end", "")).strip(),
        }
    else:
        body["working_hours"] = None
    return body


def field_errors(exc: ValidationError | ApiError) -> dict[str, str]:
    """Each problem under the form field it belongs to (``working_hours.start`` is ``start``)."""
    found = (
        [validation_error([e]) for e in exc.errors(include_input=False)]
        if isinstance(exc, ValidationError)
        else [exc]
    )
    errors: dict[str, str] = {}
    for error in found:
        parts = (error.field or "form").split(".")
        key = parts[0] if parts[0] != "working_hours" else (parts[1] if len(parts) > 1 else "hours")
        errors.setdefault(key, error.message)
    return errors


def _form_page(
    request: Request,
    member: MemberOut,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    shown = member.model_dump(mode="json")
    shown.update(values or {})
    hours = shown.get("working_hours") or {}
    days = {str(d) for d in hours.get("days") or []} if hours else {"0", "1", "2", "3", "4"}
    return render(
        request,
        "team_member.html",
        {
            "title": f"Edit {member.name}",
            "member": member,
            "values": shown,
            "hours": hours,
            "checked_days": days,
            "regions": "\n".join(str(r) for r in shown.get("regions") or []),
            "days": DAYS,
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get("/team/members/{member_id}")
async def edit_member_form(request: Request, member_id: MemberId, user: Admin, conn: ReadConn) -> Response:
    count_view(request, user, "team_member.read", "team_member", str(member_id))
    return _form_page(request, await service.get_member(conn, member_id))


@router.post("/team/members/{member_id}")
async def update_member(request: Request, member_id: MemberId, change: MemberChange) -> Response:
    current = await service.get_member(change.conn, member_id)
    body = member_form(await request.form())
    try:
        update = MemberUpdate.model_validate(body)
        await service.update_member(change.conn, member_id, update)
    except (ValidationError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.status == 404:
            raise
        return _form_page(request, current, body, field_errors(exc), status_code=400)
    await change.record(
        "team_member.update", "team_member", str(member_id), {"fields": sorted(update.model_fields_set)}
    )
    return RedirectResponse(f"/team?saved={member_id}", status_code=303)
