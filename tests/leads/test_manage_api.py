"""Lead status, list, detail and updates through HTTP."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from leadflow.kit.clock import utcnow
from tests.conftest import EXAMPLE_LEAD, Harness, example_lead

# Every test here runs on SQLite, and on PostgreSQL and MariaDB when the suite is told they are there.
pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)


async def _capture(h: Harness, **contact: Any) -> str:
    response = await h.client.post("/v1/api/leads", json=example_lead(**contact) if contact else EXAMPLE_LEAD)
    assert response.status_code == 201, response.text
    lead_id: str = response.json()["lead_id"]
    return lead_id


async def test_status_body_and_next_action(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    lead_id = await _capture(harness)
    analyst = await harness.token("analyst")
    response = await harness.client.get(f"/v1/api/leads/{lead_id}/status", headers=analyst)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "lead_id",
        "status",
        "last_updated",
        "assigned_to",
        "next_action",
        "estimated_response_time",
    }
    assert body["lead_id"] == lead_id
    assert body["status"] == "new"
    assert body["next_action"] == "Awaiting first contact"
    assert body["estimated_response_time"] == "2 hours"  # grade A

    follow_up = (utcnow() + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
    patched = await harness.client.patch(
        f"/v1/api/leads/{lead_id}",
        headers=admin,
        json={
            "status": "contacted",
            "assigned_to": "sales@nexlink.website",
            "follow_up_date": follow_up.isoformat(),
        },
    )
    assert patched.status_code == 200, patched.text
    body = (await harness.client.get(f"/v1/api/leads/{lead_id}/status", headers=analyst)).json()
    assert body["status"] == "contacted"
    assert body["assigned_to"] == "sales@nexlink.website"
    assert body["next_action"] == f"Follow-up scheduled for {follow_up:%b} {follow_up.day}"
    assert body["estimated_response_time"] == "24 hours"


async def test_unknown_lead_is_404(harness: Harness, admin: dict[str, str]) -> None:
    for path in (
        "/v1/api/leads/lead_000000000000/status",
        "/v1/api/leads/nonsense",
        "/v1/api/leads/lead_000000000000",
    ):
        response = await harness.client.get(path, headers=admin)
        assert response.status_code == 404
        assert response.json()["error"] == "LEAD_NOT_FOUND"


async def test_status_transitions_record_activities(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    lead_id = await _capture(harness)
    url = f"/v1/api/leads/{lead_id}"
    bad = await harness.client.patch(url, headers=admin, json={"status": "closed_won"})
    assert bad.status_code == 409
    assert bad.json()["error"] == "INVALID_STATUS_TRANSITION"

    contacted = (await harness.client.patch(url, headers=admin, json={"status": "contacted"})).json()
    assert contacted["status"] == "contacted"
    assert contacted["contacted_at"] is not None
    early_deal = await harness.client.patch(url, headers=admin, json={"deal_value": 100})
    assert early_deal.status_code == 409
    for step in ("qualified", "proposal"):
        assert (await harness.client.patch(url, headers=admin, json={"status": step})).status_code == 200
    won = await harness.client.patch(
        url,
        headers=admin,
        json={"status": "closed_won", "deal_value": 7500, "note": "Signed. Call Jane on 0207"},
    )
    assert won.status_code == 200, won.text
    lead = won.json()
    assert lead["status"] == "closed_won"
    assert lead["qualification_status"] == "customer"
    assert float(lead["deal_value"]) == 7500
    kinds = [a["activity_type"] for a in lead["activities"]]
    assert kinds.count("status_changed") == 4
    assert "deal_value_set" in kinds
    note = next(a for a in lead["activities"] if a["activity_type"] == "note_added")
    assert note["description"] == "Signed. Call Jane on 0207"
    # Notes are personal data too: encrypted at rest.
    raw = await harness.scalar("SELECT metadata FROM lead_activities WHERE activity_type = 'note_added'")
    assert "Jane" not in str(raw)
    final = await harness.client.patch(url, headers=admin, json={"status": "new"})
    assert final.status_code == 409


async def test_update_validation(harness: Harness, campaign: dict[str, Any], admin: dict[str, str]) -> None:
    lead_id = await _capture(harness)
    url = f"/v1/api/leads/{lead_id}"
    for body, field in (
        ({"status": "bogus"}, "status"),
        ({"unknown": 1}, "unknown"),
        ({"follow_up_date": "2025-10-05T09:00:00"}, "follow_up_date"),
        ({"deal_value": -1}, "deal_value"),
    ):
        response = await harness.client.patch(url, headers=admin, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["field"] == field


async def test_list_filters_and_cursor_pagination(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    ids = [await _capture(harness, email=f"p{i}@company.com") for i in range(7)]
    await harness.client.patch(
        f"/v1/api/leads/{ids[0]}", headers=admin, json={"status": "contacted", "assigned_to": "amy"}
    )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await harness.client.get("/v1/api/leads", headers=admin, params=params)).json()
        seen += [item["lead_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))

    def query(**params: Any) -> Any:
        return harness.client.get("/v1/api/leads", headers=admin, params=params)

    assert [i["lead_id"] for i in (await query(status="contacted")).json()["items"]] == [ids[0]]
    assert [i["lead_id"] for i in (await query(assigned_to="amy")).json()["items"]] == [ids[0]]
    assert len((await query(grade="A")).json()["items"]) == 7
    assert (await query(grade="D")).json()["items"] == []
    assert len((await query(campaign_id="nextcloud-installation-2025")).json()["items"]) == 7
    future = (utcnow() + timedelta(days=1)).isoformat()
    assert (await query(created_from=future)).json()["items"] == []
    assert len((await query(created_to=future)).json()["items"]) == 7
    item = (await query(limit=1)).json()["items"][0]
    assert item["email"].endswith("@company.com")
    assert item["lead_grade"] == "A"

    bad = await query(cursor="!!!")
    assert bad.status_code == 400
    assert bad.json()["error"] == "INVALID_CURSOR"
    assert (await query(limit=0)).status_code == 400
    assert (await query(grade="Z")).json()["field"] == "grade"


@pytest.mark.parametrize("role", ["sales", "manager", "admin"])
async def test_roles_that_may_manage_leads(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], role: str
) -> None:
    lead_id = await _capture(harness)
    await harness.client.patch(
        f"/v1/api/leads/{lead_id}", headers=admin, json={"assigned_to": f"{role}@nexlink.website"}
    )
    headers = await harness.token(role, subject=f"{role}@nexlink.website")
    response = await harness.client.patch(f"/v1/api/leads/{lead_id}", headers=headers, json={"note": "hi"})
    assert response.status_code == 200
    note = response.json()["activities"][-1]
    assert note["performed_by"] == f"{role}@nexlink.website"


async def test_a_token_seen_for_the_first_time_reads_leads_on_sqlite(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    """The list and detail routes resolve the bearer token before they take the database connection:
    on SQLite the pool holds one, and resolving an uncached token needs it (this hung for 60 s)."""
    created = await harness.client.post("/v1/api/leads", json=example_lead())
    lead_id = created.json()["lead_id"]
    for path in ("/v1/api/leads", f"/v1/api/leads/{lead_id}"):
        headers = await harness.token("admin")  # a new token: not in the token cache yet
        response = await asyncio.wait_for(harness.client.get(path, headers=headers), timeout=20)
        assert response.status_code == 200, response.text
