"""/campaigns: the list with KPIs, create/edit and token rotation through the campaign service; role
gating with the API's scopes; CSRF-less posts refused."""

from __future__ import annotations

import html
import re
from typing import Any

from tests.conftest import EXAMPLE_LEAD, Harness
from tests.web.conftest import csrf_of
from tests.web.test_page_foundation import signed_in

CAMPAIGN = "nextcloud-installation-2025"


FORM = {
    "id": "spring-sale",
    "name": "Spring sale",
    "campaign_type": "product",
    "status": "active",
    "start_date": "2025-03-01",
    "end_date": "2025-05-31",
    "budget": "500",
    "services": "Nextcloud Installation\nBackup",
    "allowed_origins": "https://shop.example.com",
    "notification_emails": "sales@example.com",
    "auto_assign": "on",
    "connector_slack": "off",
}


async def test_list_shows_kpis_and_roles_are_the_apis(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    assert (await harness.client.post("/v1/api/leads", json=EXAMPLE_LEAD)).status_code == 201
    async with signed_in(harness, "sales") as sales:  # campaigns:read, not write
        listed = await sales.get("/campaigns")
        assert listed.status_code == 200
        row = re.search(r"nextcloud-installation-2025</span></th>(.*?)</tr>", listed.text, re.S)
        assert row is not None
        cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
        assert cells[1].strip() == "1"  # leads
        assert cells[5].strip() == "1147.50"  # cost per lead: budget / 1 lead
        assert "New campaign" not in listed.text
        assert (await sales.get("/campaigns/new")).status_code == 403
        page = await sales.get(f"/campaigns/{CAMPAIGN}")
        assert page.status_code == 200 and '<fieldset class="stack" disabled>' in page.text
        token = csrf_of(page.text)
        refused = await sales.post(f"/campaigns/{CAMPAIGN}", data={"name": "X", "csrf_token": token})
        assert refused.status_code == 403
    async with signed_in(harness, "analyst") as analyst:
        assert (await analyst.get("/campaigns")).status_code == 200
    anonymous = await harness.client.get("/campaigns")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=/campaigns"


async def test_create_edit_and_rotate_through_the_service(harness: Harness, admin: dict[str, str]) -> None:
    async with signed_in(harness, "manager") as manager:
        form = await manager.get("/campaigns/new")
        token = csrf_of(form.text)
        assert (await manager.post("/campaigns/new", data=FORM)).status_code == 403  # no CSRF token
        bad = await manager.post(
            "/campaigns/new", data={**FORM, "end_date": "2025-01-01", "csrf_token": token}
        )
        assert bad.status_code == 400 and "end_date" in html.unescape(bad.text)
        created = await manager.post(
            "/campaigns/new", data={**FORM, "generate_token": "on", "csrf_token": token}
        )
        assert created.status_code == 200 and "only time the token" in created.text
        shown = re.search(r'id="campaign-token">(lfc_[^<]+)<', created.text)
        assert shown is not None

        api = (await harness.client.get("/v1/api/campaigns/spring-sale", headers=admin)).json()
        assert (api["name"], api["budget"], api["end_date"], api["has_token"]) == (
            "Spring sale",
            "500.00",
            "2025-05-31",
            True,
        )
        assert api["services"] == ["Nextcloud Installation", "Backup"]
        assert api["allowed_origins"] == ["https://shop.example.com"]
        assert api["notification_emails"] == ["sales@example.com"]
        assert api["integrations"] == {"slack": {"enabled": False}}

        edit = {
            **FORM,
            "name": "Spring sale 2",
            "status": "paused",
            "connector_slack": "default",
            "connector_hubspot": "on",
            "budget": "",
            "csrf_token": token,
        }
        del edit["id"]
        saved = await manager.post("/campaigns/spring-sale", data=edit)
        assert saved.status_code == 303 and saved.headers["location"] == "/campaigns/spring-sale?saved=1"
        api = (await harness.client.get("/v1/api/campaigns/spring-sale", headers=admin)).json()
        assert (api["name"], api["status"], api["budget"]) == ("Spring sale 2", "paused", None)
        assert api["integrations"] == {"hubspot": {"enabled": True}}

        rotated = await manager.post("/campaigns/spring-sale/token", data={"csrf_token": token})
        assert rotated.status_code == 200
        again = re.search(r'id="campaign-token">(lfc_[^<]+)<', rotated.text)
        assert again is not None and again.group(1) != shown.group(1)
        assert (await manager.post("/campaigns/spring-sale/token")).status_code == 403
    actions = await harness.scalar(
        "SELECT COUNT(*) FROM audit_log WHERE target_id = 'spring-sale' AND channel = 'dashboard'"
        " AND action IN ('campaign.create', 'campaign.update', 'campaign.token_rotate')"
    )
    assert actions == 3
