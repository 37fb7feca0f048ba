"""Audit entries for every read of personal data and every change; sales users see only their leads."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Harness, example_lead

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)


async def _capture(h: Harness, email: str) -> str:
    response = await h.client.post("/v1/api/leads", json=example_lead(email=email))
    assert response.status_code == 201
    lead_id: str = response.json()["lead_id"]
    return lead_id


async def test_reading_and_changing_a_lead_is_audited(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    lead_id = await _capture(harness, "audit.me@company.com")
    manager = await harness.token("manager", subject="manager@nexlink.website")
    read = await harness.client.get(
        f"/v1/api/leads/{lead_id}", headers={**manager, "X-Request-ID": "rid-read-1"}
    )
    assert read.status_code == 200
    await harness.client.patch(f"/v1/api/leads/{lead_id}", headers=manager, json={"status": "contacted"})
    await harness.client.get("/v1/api/leads", headers=manager)

    entries = (
        await harness.client.get("/v1/api/audit", headers=admin, params={"target_id": lead_id})
    ).json()["items"]
    actions = [e["action"] for e in entries]
    assert actions == ["lead.update", "lead.read"]  # newest first
    read_entry = entries[1]
    assert read_entry["actor"] == "manager@nexlink.website"
    assert read_entry["role"] == "manager"
    assert read_entry["channel"] == "api"
    assert read_entry["request_id"] == "rid-read-1"
    assert read_entry["ip"]
    assert entries[0]["details"] == {"fields": ["status"]}
    listed = (
        await harness.client.get("/v1/api/audit", headers=admin, params={"action": "lead.list"})
    ).json()["items"]
    assert listed[0]["details"]["lead_ids"] == [lead_id]
    created = (
        await harness.client.get("/v1/api/audit", headers=admin, params={"action": "campaign.create"})
    ).json()
    assert created["items"][0]["target_id"] == campaign["id"]
    # No personal data in the audit trail itself.
    everything = (await harness.client.get("/v1/api/audit", headers=admin, params={"limit": 500})).text
    assert "audit.me" not in everything


async def test_no_endpoint_changes_audit_rows(harness: Harness, admin: dict[str, str]) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = await harness.client.request(method, "/v1/api/audit", headers=admin, json={})
        assert response.status_code == 405, method
        response = await harness.client.request(method, "/v1/api/audit/1", headers=admin, json={})
        assert response.status_code in (404, 405), method
    for role in ("manager", "sales", "analyst", "ingest"):
        headers = await harness.token(role)
        assert (await harness.client.get("/v1/api/audit", headers=headers)).status_code == 403


async def test_sales_users_see_only_their_leads(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str]
) -> None:
    mine = await _capture(harness, "mine@company.com")
    theirs = await _capture(harness, "theirs@company.com")
    await harness.client.patch(
        f"/v1/api/leads/{mine}", headers=admin, json={"assigned_to": "amy@nexlink.website"}
    )
    await harness.client.patch(
        f"/v1/api/leads/{theirs}", headers=admin, json={"assigned_to": "bob@nexlink.website"}
    )
    amy = await harness.token("sales", subject="amy@nexlink.website")
    listed = (await harness.client.get("/v1/api/leads", headers=amy)).json()["items"]
    assert [item["lead_id"] for item in listed] == [mine]
    # Filtering for someone else's leads does not widen the view.
    other = (
        await harness.client.get("/v1/api/leads", headers=amy, params={"assigned_to": "bob@nexlink.website"})
    ).json()
    assert other["items"] == []
    assert (await harness.client.get(f"/v1/api/leads/{mine}", headers=amy)).status_code == 200
    assert (await harness.client.get(f"/v1/api/leads/{theirs}", headers=amy)).status_code == 404
    patch = await harness.client.patch(f"/v1/api/leads/{theirs}", headers=amy, json={"status": "contacted"})
    assert patch.status_code == 404
    # The status endpoint is scoped like the detail (it names the assignee and the next action).
    status = await harness.client.get(f"/v1/api/leads/{mine}/status", headers=amy)
    assert status.status_code == 200 and status.json()["assigned_to"] == "amy@nexlink.website"
    hidden = await harness.client.get(f"/v1/api/leads/{theirs}/status", headers=amy)
    assert hidden.status_code == 404 and hidden.json()["error"] == "LEAD_NOT_FOUND"
    assert "bob@" not in hidden.text
    nobody = await harness.token("sales")  # a sales token without a subject sees nothing
    assert (await harness.client.get("/v1/api/leads", headers=nobody)).json()["items"] == []
    assert (await harness.client.get(f"/v1/api/leads/{mine}/status", headers=nobody)).status_code == 404
    # Other roles with leads:status are not scoped.
    assert (await harness.client.get(f"/v1/api/leads/{theirs}/status", headers=admin)).status_code == 200


async def test_analyst_sees_aggregates_but_no_personal_data(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    lead_id = await _capture(harness, "private@company.com")
    analyst = await harness.token("analyst")
    assert (await harness.client.get(f"/v1/api/leads/{lead_id}", headers=analyst)).status_code == 403
    assert (await harness.client.get("/v1/api/leads", headers=analyst)).status_code == 403
    analytics = await harness.client.get(f"/v1/api/campaigns/{campaign['id']}/analytics", headers=analyst)
    assert analytics.status_code == 200
    status = await harness.client.get(f"/v1/api/leads/{lead_id}/status", headers=analyst)
    assert status.status_code == 200
    assert "private" not in status.text and "private" not in analytics.text
