"""The audit log (``/audit``, admins): newest first, filtered like ``GET /v1/api/audit``."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.responses import Response

from leadflow.kit.pagination import decode_cursor, encode_cursor
from leadflow.kit.state import ReadConn
from leadflow.security import audit
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import count_view, page_router, require_page
from leadflow.web.render import render

router = page_router()
# The signed-in user with the API scope the page needs (web/auth.py PageUser, typed for mypy).
Admin = Annotated[SessionPrincipal, Depends(require_page("admin"))]
PAGE = 100
Text = Annotated[str, Query(max_length=100)]


@router.get("/audit")
async def audit_page(
    request: Request,
    user: Admin,
    conn: ReadConn,
    actor: Text = "",
    action: Text = "",
    target_type: Text = "",
    target_id: Text = "",
    since: date | None = None,
    until: date | None = None,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    count_view(request, user, "audit.read", "audit")
    flt = audit.AuditFilter(
        actor or None,
        action or None,
        target_type or None,
        target_id or None,
        datetime.combine(since, time(), UTC) if since else None,
        datetime.combine(until + timedelta(days=1), time(), UTC) if until else None,
    )
    rows = await audit.page(conn, flt, decode_cursor(cursor), PAGE + 1)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    filters = {
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "since": since.isoformat() if since else "",
        "until": until.isoformat() if until else "",
    }
    return render(
        request,
        "audit.html",
        {
            "title": "Audit log",
            "rows": rows,
            "filters": filters,
            "next_cursor": encode_cursor(rows[-1].id) if more and rows else None,
        },
    )
