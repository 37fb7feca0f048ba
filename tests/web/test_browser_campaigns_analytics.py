"""Campaign create/edit and the analytics charts in real headless Chromium at a phone's width:
the totals shown match the leads posted, screenshots kept, no serious/critical axe-core violations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import example_lead
from tests.web.browser import PHONE, Live, axe_violations, browser, live, page_for, screenshot, sign_in

__all__ = ["browser", "live", "page_for"]  # fixtures


def test_campaign_create_edit_and_analytics_charts(live: Live, page_for: Callable[..., Any]) -> None:
    page = page_for(viewport=PHONE)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    sign_in(page, live, "manager", next="/campaigns")
    assert page.get_by_role("heading", name="Campaigns").is_visible()
    assert axe_violations(page) == []

    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Campaign id").fill("browser-spring")
    page.get_by_label("Name").fill("Browser spring")
    page.get_by_label("Budget").fill("300")
    page.get_by_label("Services (one per line)").fill("Nextcloud Installation")
    page.get_by_label("slack").select_option("off")
    screenshot(page, "web-campaign-new-375")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Create campaign").click()
    page.wait_for_url(f"{live.url}/campaigns/browser-spring")
    assert page.get_by_label("Name").input_value() == "Browser spring"
    assert page.get_by_label("slack").input_value() == "off"

    page.get_by_label("Name").fill("Browser spring sale")
    page.get_by_role("button", name="Save campaign").click()
    page.wait_for_url(f"{live.url}/campaigns/browser-spring?saved=1")
    assert page.get_by_role("status").inner_text() == "Saved."
    assert page.get_by_label("Name").input_value() == "Browser spring sale"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "web-campaign-edit-375")
    assert axe_violations(page) == []

    # Three leads through the public capture API, two with one ad variant and one with another.
    for i, content in enumerate(("ad-a", "ad-a", "ad-b")):
        body = example_lead(email=f"browser{i}@company.com")
        body["campaign_id"] = "browser-spring"
        body["tracking"]["utm_content"] = content
        answer = page.request.post(f"{live.url}/v1/api/leads", data=body)
        assert answer.status == 201, answer.text()

    page.goto(f"{live.url}/analytics?campaign_id=browser-spring")
    chart = page.locator('[data-chart="days"]')
    page.wait_for_function("document.querySelector('[data-chart=\"days\"]').dataset.rendered !== undefined")
    assert chart.get_attribute("data-rendered") == "3"  # the chart's points add up to the leads
    assert chart.locator("canvas").count() == 1
    assert page.locator('[data-kpi="leads"]').inner_text() == "3"
    assert page.get_by_role("row", name="ad-a 2").count() == 1
    bar_width = page.evaluate("getComputedStyle(document.querySelector('.bar[data-share]')).width")
    assert bar_width not in ("0px", "auto")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "web-analytics-375")
    assert axe_violations(page) == []

    page.goto(f"{live.url}/analytics")
    page.wait_for_function("document.querySelector('[data-chart=\"days\"]').dataset.rendered !== undefined")
    assert int(page.locator('[data-kpi="leads"]').inner_text()) >= 3
    assert not [e for e in errors if "Content Security Policy" in e], errors
