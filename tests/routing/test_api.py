"""Team member and routing rule administration through HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import Harness
from tests.routing.conftest import capture_leads

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)

MEMBERS = "/v1/api/team-members"
RULES = "/v1/api/routing-rules"

ANNA: dict[str, Any] = {
    "name": "  Anna <b>Schmidt</b> ",
    "email": "Anna.Schmidt@NexLink.Website",
    "phone": "+49 151 12345678",
    "services": ["Nextcloud Installation", "nextcloud installation", " Cloud   Migration "],
    "regions": ["de", "us-ca", "DE"],
    "capacity": 3,
    "weight": 2,
    "working_hours": {"timezone": "Europe/Berlin", "days": [4, 0, 2, 0], "start": "09:00", "end": "17:00"},
}


async def add_member(harness: Harness, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await harness.client.post(MEMBERS, headers=headers, json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def audit_trail(harness: Harness, target_type: str, target_id: int) -> list[tuple[str, Any]]:
    async with harness.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, details, actor, channel FROM audit_log "
                "WHERE target_type = :t AND target_id = :i ORDER BY id"
            ),
            {"t": target_type, "i": str(target_id)},
        )
        trail = []
        for action, details, actor, channel in rows:
            assert (actor, channel) == ("token:test-admin", "api")
            trail.append((action, json.loads(details) if isinstance(details, str) else details))
        return trail


def error(response: Any) -> tuple[int, str, str | None]:
    body = response.json()
    assert body["success"] is False
    assert body["code"] == response.status_code
    return response.status_code, body["error"], body["field"]


async def test_member_crud(harness: Harness, admin: dict[str, str]) -> None:
    created = await harness.client.post(MEMBERS, headers=admin, json=ANNA)
    assert created.status_code == 201, created.text
    anna = created.json()
    assert {k: v for k, v in anna.items() if k not in ("id", "created_at", "updated_at")} == {
        "name": "Anna Schmidt",
        "email": "anna.schmidt@nexlink.website",
        "phone": "+4915112345678",
        "active": True,
        "services": ["Nextcloud Installation", "Cloud Migration"],
        "regions": ["DE", "US-CA"],
        "capacity": 3,
        "weight": 2,
        "working_hours": {"timezone": "Europe/Berlin", "days": [0, 2, 4], "start": "09:00", "end": "17:00"},
        "open_leads": 0,
        "last_assigned_at": None,
    }
    bob = await add_member(harness, admin, name="Bob", email="bob@nexlink.website")
    assert (bob["capacity"], bob["weight"], bob["services"], bob["regions"], bob["working_hours"]) == (
        50,
        1,
        [],
        [],
        None,
    )

    fetched = await harness.client.get(f"{MEMBERS}/{anna['id']}", headers=admin)
    assert fetched.status_code == 200
    assert fetched.json() == anna

    dup = await harness.client.post(
        MEMBERS, headers=admin, json={"name": "Other", "email": "ANNA.schmidt@nexlink.website"}
    )
    assert error(dup) == (409, "MEMBER_EXISTS", "email")

    patched = await harness.client.patch(
        f"{MEMBERS}/{anna['id']}",
        headers=admin,
        json={"capacity": 0, "working_hours": None, "services": None, "active": False},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["capacity"], body["working_hours"], body["services"], body["active"]) == (0, None, [], False)
    assert body["regions"] == ["DE", "US-CA"]  # untouched
    assert body["updated_at"] >= anna["updated_at"]

    taken = await harness.client.patch(
        f"{MEMBERS}/{bob['id']}", headers=admin, json={"email": "Anna.Schmidt@nexlink.website"}
    )
    assert error(taken) == (409, "MEMBER_EXISTS", "email")
    same = await harness.client.patch(
        f"{MEMBERS}/{anna['id']}", headers=admin, json={"email": "anna.schmidt@nexlink.website"}
    )
    assert same.status_code == 200
    empty = await harness.client.patch(f"{MEMBERS}/{bob['id']}", headers=admin, json={})
    assert empty.status_code == 200
    assert empty.json() == bob

    listed = (await harness.client.get(MEMBERS, headers=admin)).json()["items"]
    assert [m["email"] for m in listed] == ["anna.schmidt@nexlink.website", "bob@nexlink.website"]
    inactive = (await harness.client.get(MEMBERS, headers=admin, params={"active": "false"})).json()["items"]
    assert [m["id"] for m in inactive] == [anna["id"]]
    active = (await harness.client.get(MEMBERS, headers=admin, params={"active": "true"})).json()["items"]
    assert [m["id"] for m in active] == [bob["id"]]

    assert (await harness.client.delete(f"{MEMBERS}/{bob['id']}", headers=admin)).status_code == 204
    assert error(await harness.client.get(f"{MEMBERS}/{bob['id']}", headers=admin)) == (
        404,
        "MEMBER_NOT_FOUND",
        "member_id",
    )
    assert error(await harness.client.delete(f"{MEMBERS}/{bob['id']}", headers=admin))[:2] == (
        404,
        "MEMBER_NOT_FOUND",
    )
    assert error(await harness.client.patch(f"{MEMBERS}/{bob['id']}", headers=admin, json={"capacity": 1}))[
        :2
    ] == (
        404,
        "MEMBER_NOT_FOUND",
    )
    # Every change is audited; refused ones (409, 404) are not.
    assert await audit_trail(harness, "team_member", anna["id"]) == [
        ("team_member.create", None),
        ("team_member.update", {"fields": ["active", "capacity", "services", "working_hours"]}),
        ("team_member.update", {"fields": ["email"]}),
    ]
    assert [a for a, _ in await audit_trail(harness, "team_member", bob["id"])] == [
        "team_member.create",
        "team_member.update",
        "team_member.delete",
    ]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"email": "not-an-email"}, "email", "Invalid email format"),
        ({"email": None}, "email", None),
        ({"phone": "030 1234567"}, "phone", "Phone numbers are international, e.g. +14155550100"),
        ({"phone": "+1 2"}, "phone", "Invalid phone number"),
        ({"name": "<b></b>"}, "name", None),
        ({"capacity": -1}, "capacity", None),
        ({"capacity": "many"}, "capacity", None),
        ({"weight": 0}, "weight", None),
        ({"regions": ["DE", "DEU"]}, "regions.1", None),
        ({"regions": ["US-"]}, "regions.0", None),
        ({"services": ["ok", ""]}, "services.1", "Service names are 1-100 characters"),
        ({"services": ["x" * 101]}, "services.0", "Service names are 1-100 characters"),
        (
            {"working_hours": {"timezone": "Mars/Olympus", "start": "09:00", "end": "17:00"}},
            "working_hours.timezone",
            None,
        ),
        (
            {"working_hours": {"timezone": "posixrules", "start": "09:00", "end": "17:00"}},
            "working_hours.timezone",
            None,
        ),
        (
            {"working_hours": {"timezone": "UTC", "start": "9:00", "end": "17:00"}},
            "working_hours.start",
            "times look like HH:MM",
        ),
        (
            {"working_hours": {"timezone": "UTC", "start": "09:00", "end": "24:00"}},
            "working_hours.end",
            "times run from 00:00 to 23:59",
        ),
        (
            {"working_hours": {"timezone": "UTC", "start": "09:00"}},
            "working_hours.end",
            "Required field missing: working_hours.end",
        ),
        (
            {"working_hours": {"timezone": "UTC", "days": [0, 7], "start": "09:00", "end": "17:00"}},
            "working_hours.days.1",
            None,
        ),
        (
            {"working_hours": {"timezone": "UTC", "days": [], "start": "09:00", "end": "17:00"}},
            "working_hours.days",
            None,
        ),
        (
            {"working_hours": {"timezone": "UTC", "start": "09:00", "end": "17:00", "lunch": "12:00"}},
            "working_hours.lunch",
            "Unknown field",
        ),
        ({"working_hours": "9-5"}, "working_hours", None),
        ({"nickname": "Annie"}, "nickname", "Unknown field"),
    ],
)
async def test_member_validation_errors(
    harness: Harness, admin: dict[str, str], change: dict[str, Any], field: str, message: str | None
) -> None:
    body = {"name": "Carla", "email": "carla@nexlink.website", **change}
    response = await harness.client.post(MEMBERS, headers=admin, json=body)
    assert error(response) == (400, "VALIDATION_ERROR", field), response.text
    if message is not None:
        assert response.json()["message"] == message
    assert await harness.scalar("SELECT count(*) FROM team_members") == 0


async def test_member_required_fields_and_nulls(harness: Harness, admin: dict[str, str]) -> None:
    missing = await harness.client.post(MEMBERS, headers=admin, json={"email": "x@nexlink.website"})
    assert error(missing) == (400, "VALIDATION_ERROR", "name")
    assert missing.json()["message"] == "Required field missing: name"
    not_json = await harness.client.post(MEMBERS, headers=admin, json=["x"])
    assert error(not_json)[:2] == (400, "VALIDATION_ERROR")
    member = await add_member(harness, admin, name="Dana", email="dana@nexlink.website")
    for name in ("name", "email", "active", "capacity", "weight"):
        response = await harness.client.patch(f"{MEMBERS}/{member['id']}", headers=admin, json={name: None})
        assert error(response) == (400, "VALIDATION_ERROR", name)
    bad = await harness.client.patch(f"{MEMBERS}/{member['id']}", headers=admin, json={"weight": 1001})
    assert error(bad) == (400, "VALIDATION_ERROR", "weight")
    for path in ("abc", "0", "-3", str(2**63)):
        assert error(await harness.client.get(f"{MEMBERS}/{path}", headers=admin)) == (
            400,
            "VALIDATION_ERROR",
            "member_id",
        )
    bad_filter = await harness.client.get(MEMBERS, headers=admin, params={"active": "maybe"})
    assert error(bad_filter) == (400, "VALIDATION_ERROR", "active")


async def test_member_with_open_leads_cannot_be_deleted(
    harness: Harness, admin: dict[str, str], campaign: dict[str, Any]
) -> None:
    member = await add_member(harness, admin, name="Eve", email="eve@nexlink.website")
    lead_ids = await capture_leads(harness, 3)
    for lead_id, status in zip(lead_ids, ("new", "closed_won", "closed_lost"), strict=True):
        await harness.execute(
            "UPDATE leads SET assigned_member_id = :m, status = :s WHERE id = :id",
            m=member["id"],
            s=status,
            id=lead_id,
        )
    assert (await harness.client.get(f"{MEMBERS}/{member['id']}", headers=admin)).json()["open_leads"] == 1
    listed = (await harness.client.get(MEMBERS, headers=admin)).json()["items"]
    assert [m["open_leads"] for m in listed] == [1]

    refused = await harness.client.delete(f"{MEMBERS}/{member['id']}", headers=admin)
    assert error(refused) == (409, "MEMBER_HAS_OPEN_LEADS", "member_id")
    assert await harness.scalar("SELECT count(*) FROM team_members") == 1

    await harness.execute("UPDATE leads SET status = 'closed_lost' WHERE id = :id", id=lead_ids[0])
    assert (await harness.client.delete(f"{MEMBERS}/{member['id']}", headers=admin)).status_code == 204
    # Closed leads lose the member link (ON DELETE SET NULL) but are otherwise untouched.
    assert await harness.scalar("SELECT count(*) FROM leads WHERE assigned_member_id IS NOT NULL") == 0
    assert await harness.scalar("SELECT count(*) FROM leads") == 3


async def test_rule_crud(harness: Harness, admin: dict[str, str]) -> None:
    anna = await add_member(harness, admin, name="Anna", email="anna@nexlink.website")
    bob = await add_member(harness, admin, name="Bob", email="bob@nexlink.website")
    created = await harness.client.post(
        RULES,
        headers=admin,
        json={
            "name": " Hot <i>DACH</i> ",
            "position": 20,
            "conditions": {
                "grades": ["a", "B", "A"],
                "countries": ["de", "AT"],
                "regions": [],
                "services": ["Nextcloud Installation", "NEXTCLOUD INSTALLATION"],
                "min_score": 70,
                "campaign_ids": ["nextcloud-installation-2025"],
            },
            "member_id": anna["id"],
        },
    )
    assert created.status_code == 201, created.text
    hot = created.json()
    assert {k: v for k, v in hot.items() if k not in ("id", "created_at")} == {
        "name": "Hot DACH",
        "position": 20,
        "active": True,
        "conditions": {
            "campaign_ids": ["nextcloud-installation-2025"],
            "services": ["Nextcloud Installation"],
            "grades": ["A", "B"],
            "min_score": 70,
            "countries": ["DE", "AT"],
        },
        "member_id": anna["id"],
        "member_email": "anna@nexlink.website",
    }
    catch_all = await harness.client.post(
        RULES, headers=admin, json={"name": "Catch all", "member_id": bob["id"]}
    )
    assert catch_all.status_code == 201
    catch_all_body = catch_all.json()
    assert (catch_all_body["position"], catch_all_body["conditions"]) == (100, {})
    first = await harness.client.post(
        RULES, headers=admin, json={"name": "First", "position": 1, "member_id": bob["id"], "active": False}
    )
    assert first.status_code == 201

    listed = (await harness.client.get(RULES, headers=admin)).json()["items"]
    assert [r["name"] for r in listed] == ["First", "Hot DACH", "Catch all"]
    only_active = (await harness.client.get(RULES, headers=admin, params={"active": True})).json()["items"]
    assert [r["name"] for r in only_active] == ["Hot DACH", "Catch all"]
    assert (await harness.client.get(f"{RULES}/{hot['id']}", headers=admin)).json() == hot

    dup = await harness.client.post(RULES, headers=admin, json={"name": "hot dach", "member_id": bob["id"]})
    assert error(dup) == (409, "RULE_EXISTS", "name")
    rename = await harness.client.patch(
        f"{RULES}/{catch_all_body['id']}", headers=admin, json={"name": "HOT DACH"}
    )
    assert error(rename) == (409, "RULE_EXISTS", "name")
    keep = await harness.client.patch(f"{RULES}/{hot['id']}", headers=admin, json={"name": "hot dach"})
    assert keep.json()["name"] == "hot dach"

    patched = await harness.client.patch(
        f"{RULES}/{hot['id']}",
        headers=admin,
        json={"conditions": {"regions": ["us-ca"]}, "member_id": bob["id"], "position": 200, "active": False},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (
        body["conditions"],
        body["member_id"],
        body["member_email"],
        body["position"],
        body["active"],
    ) == (
        {"regions": ["US-CA"]},
        bob["id"],
        "bob@nexlink.website",
        200,
        False,
    )
    cleared = await harness.client.patch(f"{RULES}/{hot['id']}", headers=admin, json={"conditions": None})
    assert cleared.json()["conditions"] == {}

    assert (await harness.client.delete(f"{RULES}/{hot['id']}", headers=admin)).status_code == 204
    for method in ("GET", "PATCH", "DELETE"):
        gone = await harness.client.request(method, f"{RULES}/{hot['id']}", headers=admin, json={})
        assert error(gone) == (404, "RULE_NOT_FOUND", "rule_id")

    assert [a for a, _ in await audit_trail(harness, "routing_rule", hot["id"])] == [
        "routing_rule.create",
        "routing_rule.update",
        "routing_rule.update",
        "routing_rule.update",
        "routing_rule.delete",
    ]

    # Deleting a member deletes their rules.
    assert (await harness.client.delete(f"{MEMBERS}/{bob['id']}", headers=admin)).status_code == 204
    assert (await harness.client.get(RULES, headers=admin)).json()["items"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"conditions": {"countries": ["DEU"]}}, "conditions.countries.0"),
        ({"conditions": {"countries": ["D1"]}}, "conditions.countries.0"),
        ({"conditions": {"grades": ["A", "E"]}}, "conditions.grades.1"),
        ({"conditions": {"min_score": 101}}, "conditions.min_score"),
        ({"conditions": {"min_score": -1}}, "conditions.min_score"),
        ({"conditions": {"regions": ["California"]}}, "conditions.regions.0"),
        ({"conditions": {"campaign_ids": ["bad id!"]}}, "conditions.campaign_ids.0"),
        ({"conditions": {"urgency": ["high"]}}, "conditions.urgency"),
        ({"conditions": ["A"]}, "conditions"),
        ({"position": -1}, "position"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"member_id": 0}, "member_id"),
        ({"member_id": 2**63}, "member_id"),
        ({"member_id": 999_999}, "member_id"),
        ({"priority": 1}, "priority"),
    ],
)
async def test_rule_validation_errors(
    harness: Harness, admin: dict[str, str], change: dict[str, Any], field: str
) -> None:
    member = await add_member(harness, admin, name="Finn", email="finn@nexlink.website")
    body = {"name": "Rule", "member_id": member["id"], **change}
    response = await harness.client.post(RULES, headers=admin, json=body)
    assert error(response) == (400, "VALIDATION_ERROR", field), response.text
    rule = await harness.client.post(RULES, headers=admin, json={"name": "Ok", "member_id": member["id"]})
    patched = await harness.client.patch(f"{RULES}/{rule.json()['id']}", headers=admin, json=change)
    assert error(patched) == (400, "VALIDATION_ERROR", field), patched.text
    assert await harness.scalar("SELECT count(*) FROM routing_rules") == 1


async def test_rule_nulls_and_path_ids(harness: Harness, admin: dict[str, str]) -> None:
    member = await add_member(harness, admin, name="Gil", email="gil@nexlink.website")
    rule = (
        await harness.client.post(RULES, headers=admin, json={"name": "R", "member_id": member["id"]})
    ).json()
    for name in ("name", "position", "active", "member_id"):
        response = await harness.client.patch(f"{RULES}/{rule['id']}", headers=admin, json={name: None})
        assert error(response) == (400, "VALIDATION_ERROR", name)
    missing = await harness.client.post(RULES, headers=admin, json={"name": "No member"})
    assert error(missing) == (400, "VALIDATION_ERROR", "member_id")
    for method in ("GET", "PATCH", "DELETE"):
        response = await harness.client.request(method, f"{RULES}/first", headers=admin, json={})
        assert error(response) == (400, "VALIDATION_ERROR", "rule_id")


ENDPOINTS = [
    ("GET", MEMBERS),
    ("POST", MEMBERS),
    ("GET", f"{MEMBERS}/1"),
    ("PATCH", f"{MEMBERS}/1"),
    ("DELETE", f"{MEMBERS}/1"),
    ("GET", RULES),
    ("POST", RULES),
    ("GET", f"{RULES}/1"),
    ("PATCH", f"{RULES}/1"),
    ("DELETE", f"{RULES}/1"),
]


async def test_every_endpoint_needs_an_admin_token(harness: Harness, admin: dict[str, str]) -> None:
    await add_member(harness, admin, name="Hana", email="hana@nexlink.website")
    others = {role: await harness.token(role) for role in ("manager", "sales", "analyst", "ingest")}
    for method, path in ENDPOINTS:
        missing = await harness.client.request(method, path, json={})
        assert error(missing) == (401, "UNAUTHORIZED", None), (method, path)
        assert missing.headers["www-authenticate"] == "Bearer"
        bogus = await harness.client.request(
            method, path, json={}, headers={"Authorization": "Bearer lf_nope"}
        )
        assert error(bogus)[:2] == (401, "UNAUTHORIZED"), (method, path)
        for role, headers in others.items():
            response = await harness.client.request(method, path, json={}, headers=headers)
            assert error(response)[:2] == (403, "FORBIDDEN"), (method, path, role)
    assert await harness.scalar("SELECT count(*) FROM team_members") == 1


async def test_openapi_documents_every_endpoint(harness: Harness) -> None:
    schema = (await harness.client.get("/openapi.json")).json()
    expected = {
        MEMBERS: {"get": {"400", "401", "403"}, "post": {"400", "401", "403", "409"}},
        f"{MEMBERS}/{{member_id}}": {
            "get": {"400", "401", "403", "404"},
            "patch": {"400", "401", "403", "404", "409"},
            "delete": {"400", "401", "403", "404", "409"},
        },
        RULES: {"get": {"400", "401", "403"}, "post": {"400", "401", "403", "409"}},
        f"{RULES}/{{rule_id}}": {
            "get": {"400", "401", "403", "404"},
            "patch": {"400", "401", "403", "404", "409"},
            "delete": {"400", "401", "403", "404"},
        },
    }
    for path, methods in expected.items():
        assert set(schema["paths"][path]) == set(methods), path
        for method, codes in methods.items():
            operation = schema["paths"][path][method]
            assert operation["summary"] and operation["description"].endswith("Scope `admin`."), (
                path,
                method,
            )
            # FastAPI adds its own 422 entry to every operation with parameters; the app answers 400.
            errors = {code for code in operation["responses"] if code.startswith("4") and code != "422"}
            assert errors == codes, (path, method, errors)
            for code in codes:
                ref = operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorBody"
            if method in ("post", "patch"):
                examples = operation["requestBody"]["content"]["application/json"]["examples"]
                assert examples, (path, method)
    components = schema["components"]["schemas"]
    assert components["MemberCreate"]["properties"]["email"]["examples"] == ["anna@nexlink.website"]
    assert components["WorkingHours"]["properties"]["timezone"]["examples"] == ["Europe/Berlin"]
