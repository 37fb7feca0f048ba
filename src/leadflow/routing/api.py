"""Team members and routing rules: the admin API.

Every endpoint needs the ``admin`` scope, reads included: the team's contact details, capacities and
routing rules are configuration that only administrators manage (no personal data of leads is shown).
Every change is written to the audit log in the same transaction.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from leadflow.errors import responses
from leadflow.kit.state import ReadConn
from leadflow.routing import service
from leadflow.routing.schemas import (
    MemberCreate,
    MemberList,
    MemberOut,
    MemberUpdate,
    RuleCreate,
    RuleList,
    RuleOut,
    RuleUpdate,
)
from leadflow.security.audit import AdminChange
from leadflow.security.auth import require
from leadflow.security.tokens import Principal

router = APIRouter(prefix="/v1/api", tags=["routing"])

MemberId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Team member id", examples=[1])]
RuleId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Routing rule id", examples=[1])]

_ANNA: dict[str, Any] = {
    "name": "Anna Schmidt",
    "email": "anna@nexlink.website",
    "phone": "+4915112345678",
    "services": ["Nextcloud Installation", "Cloud Migration"],
    "regions": ["DE", "AT"],
    "capacity": 25,
    "weight": 2,
    "working_hours": {"timezone": "Europe/Berlin", "days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"},
}


def _examples(**examples: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for named request body examples."""
    return {
        "requestBody": {
            "content": {
                "application/json": {"examples": {name: {"value": value} for name, value in examples.items()}}
            }
        }
    }


# --- team members -----------------------------------------------------------------------------------


@router.get(
    "/team-members",
    response_model=MemberList,
    summary="List team members",
    description="All team members by id, each with their current number of open leads. Scope `admin`.",
    responses=responses(400, 401, 403),
)
async def list_members(
    _: Annotated[Principal, Depends(require("admin"))],
    conn: ReadConn,
    active: Annotated[
        bool | None, Query(description="Only active (true) or inactive (false) members")
    ] = None,
) -> MemberList:
    return await service.list_members(conn, active)


@router.post(
    "/team-members",
    status_code=201,
    response_model=MemberOut,
    summary="Add a team member",
    description=(
        "A person who receives leads. `services` and `regions` restrict the round-robin to matching "
        "leads (empty: any); `capacity` caps their open leads; `weight` sets their share (2 = twice the "
        "leads of 1); `working_hours` (IANA time zone, days 0 = Monday to 6, HH:MM start and end; a "
        "start after the end runs past midnight) limits when they get leads, null = always. E-mails are "
        "stored lower-cased and are unique (409 `MEMBER_EXISTS`). Scope `admin`."
    ),
    responses=responses(400, 401, 403, 409),
    openapi_extra=_examples(
        specialist=_ANNA,
        generalist={"name": "Bob Miller", "email": "bob@nexlink.website", "capacity": 50},
    ),
)
async def create_member(
    body: MemberCreate,
    change: AdminChange,
) -> MemberOut:
    created = await service.create_member(change.conn, body)
    await change.record("team_member.create", "team_member", str(created.id))
    return created


@router.get(
    "/team-members/{member_id}",
    response_model=MemberOut,
    summary="Get a team member",
    description="Scope `admin`.",
    responses=responses(400, 401, 403, 404),
)
async def get_member(
    _: Annotated[Principal, Depends(require("admin"))],
    member_id: MemberId,
    conn: ReadConn,
) -> MemberOut:
    return await service.get_member(conn, member_id)


@router.patch(
    "/team-members/{member_id}",
    response_model=MemberOut,
    summary="Update a team member",
    description=(
        "Only the fields sent change. `active: false` stops new leads (their open leads stay theirs); "
        "`working_hours: null` makes them always available. 409 `MEMBER_EXISTS` when the new e-mail "
        "belongs to another member. Scope `admin`."
    ),
    responses=responses(400, 401, 403, 404, 409),
    openapi_extra=_examples(
        deactivate={"active": False},
        capacity={"capacity": 10, "weight": 1},
        night_shift={
            "working_hours": {
                "timezone": "America/New_York",
                "days": [0, 1, 2, 3],
                "start": "22:00",
                "end": "06:00",
            }
        },
    ),
)
async def update_member(
    member_id: MemberId,
    body: MemberUpdate,
    change: AdminChange,
) -> MemberOut:
    updated = await service.update_member(change.conn, member_id, body)
    await change.record(
        "team_member.update",
        "team_member",
        str(member_id),
        {"fields": sorted(body.model_fields_set)},
    )
    return updated


@router.delete(
    "/team-members/{member_id}",
    status_code=204,
    summary="Delete a team member",
    description=(
        "Only a member without open leads can be deleted; their routing rules are deleted with them "
        "and their closed leads keep `assigned_to`. A member with open leads is refused with 409 "
        '`MEMBER_HAS_OPEN_LEADS`: deactivate them (`PATCH {"active": false}`) and reassign their '
        "leads instead. Scope `admin`."
    ),
    responses=responses(400, 401, 403, 404, 409),
)
async def delete_member(
    member_id: MemberId,
    change: AdminChange,
) -> Response:
    await service.delete_member(change.conn, member_id)
    await change.record("team_member.delete", "team_member", str(member_id))
    return Response(status_code=204)


# --- routing rules ----------------------------------------------------------------------------------


@router.get(
    "/routing-rules",
    response_model=RuleList,
    summary="List routing rules",
    description="In evaluation order (position, then id). Scope `admin`.",
    responses=responses(400, 401, 403),
)
async def list_rules(
    _: Annotated[Principal, Depends(require("admin"))],
    conn: ReadConn,
    active: Annotated[bool | None, Query(description="Only active (true) or inactive (false) rules")] = None,
) -> RuleList:
    return await service.list_rules(conn, active)


@router.post(
    "/routing-rules",
    status_code=201,
    response_model=RuleOut,
    summary="Add a routing rule",
    description=(
        "Before the round-robin, active rules are tried in order of `position` (then age); the first "
        "whose conditions all hold and whose member is active, within working hours and below capacity "
        "gets the lead. Conditions (all optional, case-insensitive, an empty list is no constraint): "
        "`campaign_ids`, `services`, `grades`, `min_score` (inclusive), `countries` (ISO alpha-2), "
        '`regions` ("DE" or "US-CA"). No conditions: every lead matches. Names are unique (409 '
        "`RULE_EXISTS`); an unknown `member_id` is a 400. Scope `admin`."
    ),
    responses=responses(400, 401, 403, 409),
    openapi_extra=_examples(
        hot_dach={
            "name": "Hot leads DACH",
            "position": 10,
            "conditions": {"grades": ["A"], "countries": ["DE", "AT", "CH"]},
            "member_id": 1,
        },
        nextcloud={
            "name": "Nextcloud specialists",
            "position": 20,
            "conditions": {"services": ["Nextcloud Installation"], "min_score": 60},
            "member_id": 2,
        },
    ),
)
async def create_rule(
    body: RuleCreate,
    change: AdminChange,
) -> RuleOut:
    created = await service.create_rule(change.conn, body)
    await change.record(
        "routing_rule.create",
        "routing_rule",
        str(created.id),
    )
    return created


@router.get(
    "/routing-rules/{rule_id}",
    response_model=RuleOut,
    summary="Get a routing rule",
    description="Scope `admin`.",
    responses=responses(400, 401, 403, 404),
)
async def get_rule(
    _: Annotated[Principal, Depends(require("admin"))],
    rule_id: RuleId,
    conn: ReadConn,
) -> RuleOut:
    return await service.get_rule(conn, rule_id)


@router.patch(
    "/routing-rules/{rule_id}",
    response_model=RuleOut,
    summary="Update a routing rule",
    description="Only the fields sent change; `conditions` is replaced as a whole. Scope `admin`.",
    responses=responses(400, 401, 403, 404, 409),
    openapi_extra=_examples(
        disable={"active": False},
        reorder={"position": 5},
        conditions={"conditions": {"grades": ["A", "B"], "regions": ["US-CA"]}},
    ),
)
async def update_rule(
    rule_id: RuleId,
    body: RuleUpdate,
    change: AdminChange,
) -> RuleOut:
    updated = await service.update_rule(change.conn, rule_id, body)
    await change.record(
        "routing_rule.update",
        "routing_rule",
        str(rule_id),
        {"fields": sorted(body.model_fields_set)},
    )
    return updated


@router.delete(
    "/routing-rules/{rule_id}",
    status_code=204,
    summary="Delete a routing rule",
    description="Scope `admin`.",
    responses=responses(400, 401, 403, 404),
)
async def delete_rule(
    rule_id: RuleId,
    change: AdminChange,
) -> Response:
    await service.delete_rule(change.conn, rule_id)
    await change.record("routing_rule.delete", "routing_rule", str(rule_id))
    return Response(status_code=204)
