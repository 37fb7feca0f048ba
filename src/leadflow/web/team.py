"""Team and routing (``/team``, admins): members with weight, capacity and current load, working hours,
regions and services, and the routing rules — read through ``routing.service`` like the admin API.
Changes go through ``/v1/api/team-members`` and ``/v1/api/routing-rules`` for now."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response

from leadflow.kit.state import ReadConn
from leadflow.routing import service
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import count_view, page_router, require_page
from leadflow.web.render import render

router = page_router()
# The signed-in user with the API scope the page needs (web/auth.py PageUser, typed for mypy).
Admin = Annotated[SessionPrincipal, Depends(require_page("admin"))]
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@router.get("/team")
async def team_page(request: Request, user: Admin, conn: ReadConn) -> Response:
    count_view(request, user, "team.read", "team_member")
    members = (await service.list_members(conn)).items
    rules = (await service.list_rules(conn)).items
    return render(request, "team.html", {"title": "Team", "members": members, "rules": rules, "days": DAYS})
