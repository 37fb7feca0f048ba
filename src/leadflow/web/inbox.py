"""The inbox (``/``): the signed-in user's open leads first (placeholder until the inbox page lands)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import RedirectResponse, Response

from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import SignInRequired, current_user, page_router
from leadflow.web.render import nav_for, render

router = page_router()


@router.get("/")
async def inbox(
    request: Request, user: Annotated[SessionPrincipal | None, Depends(current_user)]
) -> Response:
    if user is None:
        raise SignInRequired
    if "leads:read" not in user.scopes:  # an analyst: the first page the role may open
        return RedirectResponse(nav_for(user)[0].href, status_code=303)
    return render(request, "inbox.html", {"title": "Inbox"})
