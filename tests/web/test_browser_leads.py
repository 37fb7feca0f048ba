"""The lead pages in real headless Chromium at a phone's width (375 px): a lead posted to the API
appears in the inbox without a reload; open it, change status, add a note, log a call, set a
follow-up; manual entry with the duplicate case; CSV import with a bad row. Screenshots go to
``var/test-artifacts/``; axe-core finds no serious or critical violation on any of these pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import example_lead, run_async
from tests.web.browser import PHONE, Live, axe_violations, browser, live, page_for, screenshot, sign_in
from tests.web.test_lead_pages import CSV

__all__ = ["browser", "live", "page_for"]  # fixtures

CAMPAIGN = "browser-campaign-2025"


@pytest.fixture(scope="module")
def api(live: Live) -> dict[str, str]:
    """An admin API token and the test campaign on the live server."""

    async def token() -> str:
        from leadflow.db import create_engine
        from leadflow.security.tokens import create_token

        engine = create_engine(live.settings)
        try:
            async with engine.begin() as conn:
                return (await create_token(conn, name="browser", role="admin")).token
        finally:
            await engine.dispose()

    headers = {"Authorization": f"Bearer {run_async(token())}"}
    made = httpx.post(
        f"{live.url}/v1/api/campaigns",
        headers=headers,
        json={"id": CAMPAIGN, "name": "Browser Campaign", "campaign_type": "service", "budget": 100},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    return headers


def _post_lead(live: Live, **contact: Any) -> str:
    body = example_lead(**contact)
    body["campaign_id"] = CAMPAIGN
    answer = httpx.post(f"{live.url}/v1/api/leads", json=body, timeout=10)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["lead_id"])


def _fits(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_inbox_live_update_and_working_a_lead(
    live: Live, api: dict[str, str], page_for: Callable[..., Any]
) -> None:
    page = page_for(viewport=PHONE)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live, "manager")
    assert page.get_by_role("heading", name="Inbox").is_visible()
    lead_id = _post_lead(live, email="live.inbox@example.org", firstName="Livia", lastName="Inbox")
    # No reload: the poll notices the new lead and the list swaps itself in.
    page.get_by_role("link", name="Livia Inbox").wait_for(timeout=15_000)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    _fits(page)
    screenshot(page, "web-inbox-lead-375")
    assert axe_violations(page) == []

    page.get_by_role("link", name="Livia Inbox").click()
    page.wait_for_url(f"{live.url}/leads/{lead_id}")
    assert page.get_by_role("heading", name="Score", exact=False).first.is_visible()
    _fits(page)
    screenshot(page, "web-lead-375")
    assert axe_violations(page) == []

    page.get_by_label("Change status").select_option("contacted")
    page.get_by_role("button", name="Change status").click()
    assert page.get_by_role("status").first.inner_text() == "Status changed."
    page.get_by_label("Add a note").fill("Wants a quote by Friday")
    page.get_by_role("button", name="Add note").click()
    assert "Wants a quote by Friday" in page.inner_text(".timeline")
    page.get_by_label("Log").select_option("call_made")
    page.get_by_role("button", name="Log activity").click()
    assert "Call logged" in page.inner_text(".timeline")
    page.get_by_label("Follow-up date and time").fill("2030-05-06T10:15")
    page.get_by_role("button", name="Set follow-up").click()
    assert page.get_by_role("status").first.inner_text() == "Follow-up saved."
    assert "follow up scheduled" in page.inner_text(".timeline")
    screenshot(page, "web-lead-worked-375")
    assert axe_violations(page) == []
    detail = httpx.get(f"{live.url}/v1/api/leads/{lead_id}", headers=api, timeout=10).json()
    assert detail["status"] == "contacted" and detail["follow_up_date"].startswith("2030-05-06")
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_list_manual_entry_and_duplicate(
    live: Live, api: dict[str, str], page_for: Callable[..., Any]
) -> None:
    page = page_for(viewport=PHONE)
    sign_in(page, live, "manager", "/leads/new")
    _fits(page)
    screenshot(page, "web-new-lead-375")
    assert axe_violations(page) == []
    page.get_by_label("Campaign").select_option(CAMPAIGN)
    page.get_by_label("First name").fill("Phoebe")
    page.get_by_role("button", name="Save lead").click()
    assert page.locator("#e-last_name").is_visible() and page.locator("#e-email").is_visible()
    assert axe_violations(page) == []
    page.get_by_label("Last name").fill("Caller")
    page.get_by_label("Phone").fill("+1 415 555 0199")
    page.get_by_role("button", name="Save lead").click()
    page.wait_for_url("**/leads/lead_*?done=created")
    assert page.get_by_role("heading", name="Phoebe Caller").is_visible()

    page.goto(f"{live.url}/leads/new")
    page.get_by_label("Campaign").select_option(CAMPAIGN)
    page.get_by_label("First name").fill("Phoebe")
    page.get_by_label("Last name").fill("Caller")
    page.get_by_label("Phone").fill("+1 415 555 0199")
    page.get_by_role("button", name="Save lead").click()
    page.get_by_role("link", name="open the existing lead").click()
    assert page.get_by_role("heading", name="Phoebe Caller").is_visible()

    page.goto(f"{live.url}/leads?source=phone")
    assert page.get_by_role("link", name="Phoebe Caller").is_visible()
    _fits(page)
    screenshot(page, "web-leads-375")
    assert axe_violations(page) == []


def test_csv_import_with_a_bad_row(
    live: Live, api: dict[str, str], page_for: Callable[..., Any], tmp_path: Any
) -> None:
    file = tmp_path / "leads.csv"
    file.write_bytes(CSV)
    page = page_for(viewport=PHONE)
    sign_in(page, live, "admin", "/leads/import")
    assert axe_violations(page) == []
    page.get_by_label("Campaign").select_option(CAMPAIGN)
    page.get_by_label("CSV file").set_input_files(str(file))
    page.get_by_role("button", name="Preview").click()
    assert "2 can be imported, 2 have errors" in page.get_by_role("status").inner_text()
    _fits(page)
    screenshot(page, "web-import-preview-375")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Import 2 leads").click()
    assert page.get_by_role("status").inner_text().startswith("2 created, 0 already imported")
    screenshot(page, "web-import-done-375")
    assert axe_violations(page) == []
