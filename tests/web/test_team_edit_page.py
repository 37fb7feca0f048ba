"""/team/members/{id}: admins edit weight, capacity, active flag, working hours and regions through the
routing service (the API's validation, scope and audit action); errors next to their fields."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from leadflow.security.repository import audit
from tests.conftest import Harness
from tests.web.conftest import csrf_of
from tests.web.test_page_foundation import signed_in


async def _member(harness: Harness, admin: dict[str, str]) -> dict[str, Any]:
    body = {"name": "Anna Schmidt", "email": "anna@nexlink.website", "regions": ["DE"], "capacity": 25}
    created = await harness.client.post("/v1/api/team-members", headers=admin, json=body)
    assert created.status_code == 201, created.text
    return dict(created.json())


async def test_only_admins_edit_members(harness: Harness, admin: dict[str, str]) -> None:
    member = await _member(harness, admin)
    for role in ("manager", "sales", "analyst"):
        async with signed_in(harness, role) as client:
            assert (await client.get(f"/team/members/{member['id']}")).status_code == 403, role
            assert (
                await client.post(f"/team/members/{member['id']}", data={"weight": "5"})
            ).status_code == 403
    assert (await harness.client.get(f"/team/members/{member['id']}")).status_code == 303


async def test_edit_a_member(harness: Harness, admin: dict[str, str]) -> None:
    member = await _member(harness, admin)
    url = f"/team/members/{member['id']}"
    async with signed_in(harness, "admin") as client:
        team = await client.get("/team")
        assert f'href="{url}"' in team.text
        form = await client.get(url)
        assert form.status_code == 200 and 'value="25"' in form.text
        assert (await client.post(url, data={"weight": "3"})).status_code == 403  # no CSRF token
        data = {
            "csrf_token": csrf_of(form.text),
            "weight": "3",
            "capacity": "10",
            "regions": "de\nUS-CA",
            "hours": "set",
            "timezone": "Europe/Berlin",
            "days": ["0", "2", "4"],
            "start": "08:30",
            "end": "16:00",
        }  # "active" unchecked: the member stops receiving leads
        saved = await client.post(url, data=data)
        assert saved.status_code == 303 and saved.headers["location"] == f"/team?saved={member['id']}"
        assert "saved." in (await client.get(saved.headers["location"])).text

        after = (await harness.client.get(f"/v1/api/team-members/{member['id']}", headers=admin)).json()
        assert (after["weight"], after["capacity"], after["active"], after["regions"]) == (
            3,
            10,
            False,
            ["DE", "US-CA"],
        )
        assert after["working_hours"] == {
            "timezone": "Europe/Berlin",
            "days": [0, 2, 4],
            "start": "08:30",
            "end": "16:00",
        }

        always = {**data, "hours": "always", "active": "on"}
        assert (await client.post(url, data=always)).status_code == 303
        after = (await harness.client.get(f"/v1/api/team-members/{member['id']}", headers=admin)).json()
        assert after["working_hours"] is None and after["active"] is True
        assert (await client.get("/team/members/999999")).status_code == 404

    async with harness.engine.connect() as conn:
        entries = (
            await conn.execute(
                select(audit.c.action, audit.c.channel, audit.c.details).where(
                    audit.c.action == "team_member.update", audit.c.target_id == str(member["id"])
                )
            )
        ).all()
    assert [(e.channel, e.details["fields"]) for e in entries] == [
        ("dashboard", ["active", "capacity", "regions", "weight", "working_hours"])
    ] * 2


async def test_errors_are_shown_next_to_fields(harness: Harness, admin: dict[str, str]) -> None:
    member = await _member(harness, admin)
    url = f"/team/members/{member['id']}"
    async with signed_in(harness, "admin") as client:
        csrf = csrf_of((await client.get(url)).text)
        bad = await client.post(
            url,
            data={
                "csrf_token": csrf,
                "weight": "0",
                "capacity": "lots",
                "regions": "Germany",
                "hours": "set",
                "timezone": "Mars/Olympus",
                "start": "25:00",
                "end": "17:00",
                "days": "1",
            },
        )
        assert bad.status_code == 400
        for field in ("weight", "capacity", "regions", "timezone", "start"):
            assert f'aria-describedby="{field}-error"' in bad.text, field
            assert f'<p class="error" id="{field}-error">' in bad.text, field
        assert "Unknown time zone" in bad.text and 'value="Mars/Olympus"' in bad.text  # input kept
    unchanged = (await harness.client.get(f"/v1/api/team-members/{member['id']}", headers=admin)).json()
    assert (unchanged["weight"], unchanged["capacity"], unchanged["regions"]) == (1, 25, ["DE"])
