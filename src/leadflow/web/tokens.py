"""API tokens (``/tokens``, admins): the list (never a secret), create (shown once) and revoke, through
``security/tokens.py`` and audited like ``leadflow tokens create|revoke`` (``token.create``,
``token.revoke``; channel ``dashboard``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import RedirectResponse, Response

from leadflow.kit.clock import utcnow
from leadflow.kit.state import ReadConn
from leadflow.security import tokens
from leadflow.security.audit import Change
from leadflow.security.models import ROLES
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import PageError, count_view, page_change, page_router, require_page
from leadflow.web.render import render

router = page_router()
SCOPE = "admin"  # as the CLI: only administrators hand out API access
Admin = Annotated[SessionPrincipal, Depends(require_page(SCOPE))]
TokenChange = Annotated[Change, Depends(page_change(SCOPE))]
TokenId = Annotated[int, Path(ge=1, le=2**63 - 1)]


async def _list_page(
    request: Request,
    conn: AsyncConnection,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    rows = await tokens.list_tokens(conn)
    return render(
        request,
        "tokens.html",
        {
            "title": "API tokens",
            "rows": rows,
            "now": utcnow(),
            "roles": ROLES,
            "hints": tokens.ROLE_HINTS,
            "values": values or {"role": "ingest"},
            "errors": errors or {},
            "revoked": request.query_params.get("revoked"),
        },
        status_code=status_code,
    )


@router.get("/tokens")
async def token_list(request: Request, user: Admin, conn: ReadConn) -> Response:
    count_view(request, user, "token.list", "token")
    return await _list_page(request, conn)


def _days(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 6 else (0 if text else None)


@router.post("/tokens")
async def create_token(request: Request, change: TokenChange) -> Response:
    form = await request.form()
    values = {k: str(form.get(k, "")).strip() for k in ("name", "role", "subject", "expires_days")}
    expires_days = _days(values["expires_days"])
    subject = values["subject"] or None
    errors = tokens.check_new_token(values["name"], values["role"], subject, expires_days)
    if errors:
        return await _list_page(request, change.conn, values, errors, status_code=400)
    created = await tokens.create_token(
        change.conn,
        name=values["name"],
        role=values["role"],
        subject=subject,
        expires_in=timedelta(days=expires_days) if expires_days else None,
    )
    await change.record(
        "token.create", "token", str(created.id), {"role": created.role, "name": created.name}
    )
    return render(
        request,
        "token_created.html",
        {"title": "API token created", "created": created},
        headers={"Cache-Control": "no-store"},
    )


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(token_id: TokenId, change: TokenChange) -> Response:
    if not await tokens.revoke_token(change.conn, token_id):
        raise PageError(404, "Not found", f"There is no active token #{token_id}.", "TOKEN_NOT_FOUND")
    await change.record("token.revoke", "token", str(token_id))
    change.after.add(change.state.tokens.forget)  # this process refuses it at once, others within seconds
    return RedirectResponse(f"/tokens?revoked={token_id}", status_code=303)
