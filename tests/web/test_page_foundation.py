"""What a page module gets from web/auth.py: role gating with the API's scopes, HTML error pages,
CSRF before the handler, audit of personal-data views — on a test page mounted next to the real ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
import pytest
from fastapi import Form, Request
from starlette.responses import Response

from leadflow.errors import ApiError
from leadflow.kit.state import WriteConn
from leadflow.security.audit import record
from leadflow.web.auth import PageError, PageUser, actor, audit_view, count_view, page_router
from leadflow.web.render import render
from tests.conftest import Harness
from tests.web.conftest import csrf_of, make_user, sign_in

router = page_router()


@router.get("/test-pages/lead/{lead_id}")
async def lead_view(request: Request, lead_id: str, user: PageUser("leads:read")) -> Response:
    if lead_id == "missing":
        raise ApiError(404, "LEAD_NOT_FOUND", "No such lead")
    if lead_id == "gone":
        raise PageError(410, "Erased", "This lead was erased.")
    await audit_view(request, user, "lead.read", "lead", lead_id)
    return render(request, "error.html", {"title": f"Lead {lead_id}", "message": user.subject, "status": 200})


@router.get("/test-pages/analytics")
async def analytics_view(request: Request, user: PageUser("analytics:read")) -> Response:
    count_view(request, user, "analytics.read", "campaign", "all")
    return render(request, "error.html", {"title": "Analytics", "message": "", "status": 200})


@router.post("/test-pages/note")
async def add_note(
    request: Request, conn: WriteConn, user: PageUser("leads:write"), text: Annotated[str, Form(min_length=1)]
) -> Response:
    await record(conn, actor(request, user), "lead.note")
    if text == "fail":
        raise ApiError(409, "CONFLICT", "Refused after writing")  # the write above rolls back
    return render(request, "error.html", {"title": "Saved", "message": text, "status": 200})


@pytest.fixture
async def pages(harness: Harness) -> Harness:
    harness.app.include_router(router)
    return harness


@asynccontextmanager
async def signed_in(harness: Harness, role: str) -> AsyncIterator[httpx.AsyncClient]:
    staff = await make_user(harness, role)
    transport = httpx.ASGITransport(app=harness.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await sign_in(client, staff)
        yield client


async def test_roles_get_the_api_scopes(pages: Harness) -> None:
    async with signed_in(pages, "analyst") as analyst:
        refused = await analyst.get("/test-pages/lead/lead_1")
        assert refused.status_code == 403 and "Your role (analyst) may not open this page" in refused.text
        assert refused.headers["content-type"].startswith("text/html")
        assert (await analyst.get("/test-pages/analytics")).status_code == 200
    async with signed_in(pages, "sales") as sales:
        assert (await sales.get("/test-pages/analytics")).status_code == 403
        shown = await sales.get("/test-pages/lead/lead_1")
        assert shown.status_code == 200 and "sales@example.com" in shown.text  # subject: own address


async def test_errors_are_pages_and_views_are_audited(pages: Harness) -> None:
    async with signed_in(pages, "manager") as manager:
        missing = await manager.get("/test-pages/lead/missing")
        assert (
            missing.status_code == 404
            and "<h1>Not found</h1>" in missing.text
            and "No such lead" in missing.text
        )
        gone = await manager.get("/test-pages/lead/gone")
        assert gone.status_code == 410 and "This lead was erased." in gone.text
        assert (await manager.get("/test-pages/lead/lead_7")).status_code == 200
    row = await pages.scalar(
        "SELECT actor || '|' || role || '|' || channel || '|' || target_id FROM audit_log WHERE action = 'lead.read'"
    )
    assert row == "manager@example.com|manager|dashboard|lead_7"


async def test_changes_need_csrf_and_roll_back_on_error(pages: Harness) -> None:
    async with signed_in(pages, "sales") as sales:
        token = csrf_of((await sales.get("/")).text)
        assert (await sales.post("/test-pages/note", data={"text": "hi"})).status_code == 403
        invalid = await sales.post("/test-pages/note", data={"text": "", "csrf_token": token})
        assert invalid.status_code == 400 and "Invalid input" in invalid.text
        failed = await sales.post("/test-pages/note", data={"text": "fail", "csrf_token": token})
        assert failed.status_code == 409 and "Refused after writing" in failed.text
        saved = await sales.post("/test-pages/note", data={"text": "hi", "csrf_token": token})
        assert saved.status_code == 200
        htmx = await sales.post(
            "/test-pages/note", data={"text": "via htmx"}, headers={"X-CSRF-Token": token}
        )
        assert htmx.status_code == 200
    assert await pages.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'lead.note'") == 2
