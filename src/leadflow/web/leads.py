"""The lead list (``/leads``): filters, exact search through the blind indexes, sort, cursor paging and
the CSV export of the filtered list.

Thin like the API's ``GET /v1/api/leads``: the same filter (:class:`~leadflow.leads.repository.
LeadFilter`), the same list service and cursor, the same scoping (a sales user sees only their own
leads) and the same audit entry (``lead.list`` with the ids shown). Names are encrypted, so they are
not searchable; an e-mail address, phone number or lead id is matched exactly (e-mail and phone by
their blind indexes).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from starlette.responses import Response, StreamingResponse

from leadflow.campaigns import repository as campaigns_repo
from leadflow.errors import ApiError
from leadflow.integrations.csv_export import COLUMNS, iter_filtered, parse_bound, safe_cell
from leadflow.kit.ids import LEAD_ID_RE
from leadflow.kit.pagination import decode_cursor
from leadflow.kit.state import AppState, AppStateDep
from leadflow.leads import service
from leadflow.leads.entry import STAFF_SOURCES
from leadflow.leads.models import GRADES, SOURCES, STATUSES
from leadflow.leads.repository import LeadFilter
from leadflow.routing import service as routing
from leadflow.scoring.channels import CHANNEL_MEDIUM
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import actor, audit_view, page_router, require_page
from leadflow.web.render import render

router = page_router()
Reader = Annotated[SessionPrincipal, Depends(require_page("leads:read"))]
PAGE_SIZE = 50
FIELDS = ("campaign", "status", "grade", "assignee", "source", "channel", "from", "to", "q", "sort")
CHANNELS = tuple(sorted({*CHANNEL_MEDIUM, "Direct", "Unassigned"}))
SOURCE_CHOICES = tuple(dict.fromkeys((*SOURCES, *STAFF_SOURCES)))  # the API's and manual entry's


@dataclass
class ListQuery:
    """The list's query string, checked; problems are shown next to their field, never a 400."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    notice: str | None = None

    @classmethod
    def of(cls, request: Request) -> ListQuery:
        params = request.query_params
        return cls({name: params.get(name, "").strip()[:320] for name in FIELDS})

    def link(self, **changes: str) -> str:
        """The query string of this list with ``changes`` (empty values left out)."""
        merged = {**self.values, **changes}
        return urlencode({k: v for k, v in merged.items() if v})

    def _choice(self, name: str, allowed: tuple[str, ...]) -> str | None:
        value = self.values[name]
        if value and value not in allowed:
            self.errors[name] = "Not one of the choices."
            return None
        return value or None

    def _bound(self, name: str, *, end: bool) -> datetime | None:
        if not self.values[name]:
            return None
        try:
            return parse_bound(self.values[name], end=end)
        except ValueError:
            self.errors[name] = "Use a date like 2025-10-03."
            return None

    def lead_filter(self, state: AppState, user: SessionPrincipal) -> LeadFilter:
        email_hash = public_id = phone_hash = None
        q = self.values["q"]
        if q:
            if LEAD_ID_RE.match(q):
                public_id = q
            elif "@" in q:
                from leadflow.privacy.service import email_hash as hash_of

                try:
                    email_hash = hash_of(state.cipher, q)
                except ApiError:
                    self.errors["q"] = "This is not a valid e-mail address."
            else:
                from leadflow.kit.text import normalise_phone, phone_index_form

                try:
                    phone = normalise_phone(q, state.settings.default_phone_region)
                    phone_hash = state.cipher.blind_index(phone_index_form(phone))
                except ValueError:
                    self.errors["q"] = "Search by a whole e-mail address, phone number or lead id (lead_…)."
        return LeadFilter(
            campaign_id=self.values["campaign"] or None,
            status=self._choice("status", STATUSES),
            grade=self._choice("grade", GRADES),
            assigned_to=self.values["assignee"] or None,
            created_from=self._bound("from", end=False),
            created_to=self._bound("to", end=True),
            only_assigned_to=service.only_assigned_to(user),
            email_hash=email_hash,
            source=self._choice("source", SOURCE_CHOICES),
            channel=self._choice("channel", CHANNELS),
            public_id=public_id,
            phone_hash=phone_hash,
            oldest_first=self.values["sort"] == "oldest",
        )


@router.get("/leads")
async def leads_list(
    request: Request, state: AppStateDep, user: Reader, cursor: str = "", erased: str = ""
) -> Response:
    query = ListQuery.of(request)
    flt = query.lead_filter(state, user)
    before = decode_cursor(cursor or None)
    async with state.engine.connect() as conn:  # closed before the audit entry (SQLite: one connection)
        page = None if query.errors else await service.page(conn, state.cipher, flt, before, PAGE_SIZE)
        campaigns = await campaigns_repo.list_all(conn)
        members = await routing.member_choices(conn) if user.role != "sales" else []
    if page is not None:
        shown = [i.lead_id for i in page.items]
        await audit_view(request, user, "lead.list", "lead", None, {"lead_ids": shown})
    return render(
        request,
        "leads.html",
        {
            "title": "Leads",
            "query": query,
            "page": page,
            "campaigns": campaigns,
            "members": members,
            "statuses": STATUSES,
            "grades": GRADES,
            "sources": SOURCE_CHOICES,
            "channels": CHANNELS,
            "first_page": not cursor,
            "erased": f"The person's data is erased ({int(erased)} leads)." if erased.isdigit() else None,
            "filtered": any(v for k, v in query.values.items() if k != "q") or bool(query.errors),
        },
        status_code=400 if query.errors else 200,
    )


@router.get("/leads/export.csv")
async def export_list(request: Request, state: AppStateDep, user: Reader) -> Response:
    """The filtered list as CSV (formula-safe cells), streamed; audited as ``leads.export``."""
    query = ListQuery.of(request)
    flt = query.lead_filter(state, user)
    if query.errors:
        raise ApiError(400, "VALIDATION_ERROR", "; ".join(f"{k}: {v}" for k, v in query.errors.items()))
    who = actor(request, user)

    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        count, completed = 0, False
        try:
            async with state.engine.connect() as conn:
                async for record in iter_filtered(conn, state.cipher, flt):
                    writer.writerow([safe_cell(record.get(column)) for column in COLUMNS])
                    count += 1
                    if buffer.tell() > 64_000:
                        yield _drain(buffer)
            completed = True
            yield _drain(buffer)
        finally:  # a partial export has still read personal data
            details: dict[str, Any] = {"filters": query.link(), "rows": count, "completed": completed}
            from leadflow.security.audit import record_now

            await record_now(state.engine, who, "leads.export", "lead", None, details)

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="leads.csv"', "Cache-Control": "no-store"},
    )


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
