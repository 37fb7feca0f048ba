"""/analytics: the dashboard's figures as a page (seeded data with known totals), role gating."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any

from leadflow.kit.clock import utcnow
from tests.campaigns.test_dashboard_api import CAMPAIGN, SEED, seed
from tests.conftest import Harness
from tests.web.test_page_foundation import signed_in


def _kpi(page: str, name: str) -> str:
    found = re.search(rf'data-kpi="{name}">([^<]+)<', page)
    assert found, name
    return found.group(1)


async def test_analytics_page_shows_the_seeded_totals(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    await seed(harness, CAMPAIGN, SEED, "page")
    today = utcnow().date()
    async with signed_in(harness, "analyst") as analyst:
        page = await analyst.get("/analytics")
        assert page.status_code == 200
        text = page.text
        assert (_kpi(text, "leads"), _kpi(text, "qualified"), _kpi(text, "won"), _kpi(text, "revenue")) == (
            "10",
            "4",
            "2",
            "1500.00",
        )
        chart = re.search(r'data-chart="days" data-x="([^"]*)" data-y="([^"]*)"', text)
        assert chart is not None
        days, counts = json.loads(html.unescape(chart.group(1))), json.loads(html.unescape(chart.group(2)))
        assert len(days) == 30 and days[-1] == str(today) and sum(counts) == 10
        assert counts[-3:] == [4, 6, 0]
        assert "Not enough evidence yet" in html.unescape(text)
        assert 'src="/static/charts.' in text and "vendor/uplot/uPlot.iife.min." in text
        assert "<script>" not in text  # no inline script

        one = await analyst.get(
            "/analytics",
            params={"campaign_id": CAMPAIGN, "start": str(today - timedelta(days=1)), "end": str(today)},
        )
        assert one.status_code == 200 and _kpi(one.text, "leads") == "6"
        missing = await analyst.get("/analytics", params={"campaign_id": "nope"})
        assert missing.status_code == 404 and "Campaign not found" in missing.text
        backwards = await analyst.get("/analytics", params={"start": "2025-02-01", "end": "2025-01-01"})
        assert backwards.status_code == 400
    async with signed_in(harness, "sales") as sales:
        assert (await sales.get("/analytics")).status_code == 403
