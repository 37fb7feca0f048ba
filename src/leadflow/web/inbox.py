"""The inbox (``/``): the signed-in salesperson's open leads — best grade first, then oldest — and the
follow-ups due today or overdue, one screen of each at a time (``service.INBOX_PAGE`` leads, a "Next"
link with a cursor for the rest, counts capped at "1,000+"). New leads appear without a reload: a tiny
fragment polls ``/inbox/poll`` every few seconds, which compares a mark of what the screen shows read
from the database (so it works whichever API process answers) and, when it changed, makes the list
reload itself (``HX-Trigger: inbox-changed``). The poll shows no personal data; each list shown is
audited like the API's ``lead.list``. Managers and admins switch between "mine", one rep's and all leads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import RedirectResponse, Response

from leadflow.kit.clock import utcnow
from leadflow.kit.pagination import decode_cursor
from leadflow.kit.state import AppStateDep, ReadConn
from leadflow.leads import service
from leadflow.routing import service as routing
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import SignInRequired, audit_view, current_user, page_router, require_page
from leadflow.web.render import nav_for, render

router = page_router()
Reader = Annotated[SessionPrincipal, Depends(require_page("leads:read"))]
POLL_SECONDS = 5
ViewParam = Annotated[str, Query(max_length=200)]
# Where each list of the screen starts: the cursor of the lead before it (kit/pagination.py).
OpenParam = Annotated[str | None, Query(alias="open")]
DueParam = Annotated[str | None, Query(alias="due")]


@dataclass(frozen=True, slots=True)
class InboxView:
    """Whose leads the inbox shows: ``key`` as in the URL (``mine``, ``all``, ``rep:<e-mail>``)."""

    key: str
    owner: str | None  # the assignee filter (None: everyone's)
    label: str


async def choose(
    conn: AsyncConnection, user: SessionPrincipal, view: str
) -> tuple[InboxView, list[InboxView]]:
    """The view asked for (a sales user always gets their own leads) and the views the user may pick."""
    mine = InboxView("mine", service.only_assigned_to(user) or user.subject, "My leads")
    if user.role == "sales":
        return mine, []
    members = await routing.member_choices(conn, active=True)
    options = [mine, InboxView("all", None, "All leads")] + [
        InboxView(f"rep:{m.email}", m.email, m.name) for m in members if m.email != user.subject
    ]
    default = "mine" if user.member_id is not None else "all"
    chosen = next((o for o in options if o.key == (view or default)), None)
    return chosen or next(o for o in options if o.key == default), options


@router.get("/")
async def inbox(
    request: Request,
    state: AppStateDep,
    user: Annotated[SessionPrincipal | None, Depends(current_user)],
    view: ViewParam = "",
    open_cursor: OpenParam = None,
    due_cursor: DueParam = None,
) -> Response:
    if user is None:
        raise SignInRequired
    if "leads:read" not in user.scopes:  # an analyst: the first page the role may open
        return RedirectResponse(nav_for(user)[0].href, status_code=303)
    where = Where(open_cursor, due_cursor)
    async with state.engine.connect() as conn:  # closed before the audit entry (SQLite: one connection)
        chosen, options = await choose(conn, user, view)
        box = await service.inbox(conn, state.cipher, chosen.owner, utcnow(), **where.after())
    await _audit(request, user, box)
    return render(
        request,
        "inbox.html",
        {"title": "Inbox", "box": box, "view": chosen, "options": options, "poll": POLL_SECONDS, "at": where},
    )


@router.get("/inbox/list")
async def inbox_list(
    request: Request,
    state: AppStateDep,
    user: Reader,
    view: ViewParam = "",
    open_cursor: OpenParam = None,
    due_cursor: DueParam = None,
) -> Response:
    """The list fragment (htmx swaps it in when the poll says the inbox changed)."""
    where = Where(open_cursor, due_cursor)
    async with state.engine.connect() as conn:
        chosen, _ = await choose(conn, user, view)
        box = await service.inbox(conn, state.cipher, chosen.owner, utcnow(), **where.after())
    await _audit(request, user, box)
    return render(
        request, "_inbox_list.html", {"box": box, "view": chosen, "poll": POLL_SECONDS, "at": where}
    )


@router.get("/inbox/poll")
async def inbox_poll(
    request: Request,
    user: Reader,
    conn: ReadConn,
    view: ViewParam = "",
    mark: Annotated[str, Query(max_length=100)] = "",
    open_cursor: OpenParam = None,
    due_cursor: DueParam = None,
) -> Response:
    """No personal data: the mark of the screen; ``HX-Trigger: inbox-changed`` when it moved."""
    where = Where(open_cursor, due_cursor)
    chosen, _ = await choose(conn, user, view)
    now = await service.inbox_mark(conn, chosen.owner, utcnow(), **where.after())
    headers = {"HX-Trigger": "inbox-changed"} if now != mark else None
    return render(
        request,
        "_inbox_poll.html",
        {"view": chosen, "mark": now, "poll": POLL_SECONDS, "at": where},
        headers=headers,
    )


@dataclass(frozen=True, slots=True)
class Where:
    """Where the two lists of the screen start (the ``open`` and ``due`` cursors of the URL)."""

    open: str | None
    due: str | None

    def after(self) -> dict[str, int | None]:
        """The lead ids the lists start after (a cursor we did not issue: 400 ``INVALID_CURSOR``)."""
        return {"open_after": decode_cursor(self.open), "due_after": decode_cursor(self.due)}

    def query(self, view: InboxView, **changes: str | None) -> str:
        """The query string of this screen (``changes``: other cursors; None drops one)."""
        values = {"view": view.key, "open": self.open, "due": self.due, **changes}
        return urlencode({k: v for k, v in values.items() if v})


async def _audit(request: Request, user: SessionPrincipal, box: service.Inbox) -> None:
    shown = box.shown
    if shown:  # an empty inbox shows no personal data
        await audit_view(request, user, "lead.list", "lead", None, {"lead_ids": shown, "page": "inbox"})
