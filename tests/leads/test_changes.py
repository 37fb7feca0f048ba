"""One place that applies a change to a lead: the typed change, its plan, and what ``apply`` writes."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from leadflow.app import create_app
from leadflow.campaigns import repository as campaigns_repo
from leadflow.config import Settings
from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow
from leadflow.kit.state import state_of
from leadflow.leads import repository as repo
from leadflow.leads.activities import ACTOR_LENGTH, Activity, note_text
from leadflow.leads.changes import UNSET, Audit, LeadChange, Write, apply, plan
from leadflow.leads.models import ACTIVITY_TYPES, OPTIONAL_FIELDS
from leadflow.leads.schemas import LeadUpdate
from leadflow.scoring import rules
from leadflow.security.audit import Actor, audit
from leadflow.security.crypto import FieldCipher
from tests.conftest import TEST_KEY, Harness, example_lead

CIPHER = FieldCipher([base64.b64decode(TEST_KEY)])
NOW = datetime(2025, 10, 1, 9, 30, tzinfo=UTC)
SALES = Actor(name="sales@nexlink.website", role="sales", channel="api", request_id="req-1")


def lead(**overrides: Any) -> Any:
    """A stored lead as :func:`plan` reads it (contact fields encrypted like the table's)."""
    contact = {"first_name": "John", "last_name": "Smith", "email": "john@company.com", "phone": None}
    contact.update({k: v for k, v in overrides.items() if k in ("first_name", "last_name", "email", "phone")})
    values: dict[str, Any] = {
        "id": 7,
        "public_id": "lead_abc123def456",
        "campaign_id": "nextcloud-installation-2025",
        "created_at": NOW - timedelta(days=3),
        "status": "new",
        "contacted_at": None,
        "assigned_to": None,
        "anonymized_at": None,
        "email_hash": CIPHER.blind_index(contact["email"] or ""),
        "company": CIPHER.encrypt("Acme", "company"),
        **{name: CIPHER.encrypt(value, name) for name, value in contact.items()},
    }
    values.update({k: v for k, v in overrides.items() if k not in contact})
    return SimpleNamespace(**values)


def planned(row: Any, **change: Any) -> Write:
    return plan(row, LeadChange(**change), cipher=CIPHER, actor="sales@nexlink.website", now=NOW)


# -- the typed change ----------------------------------------------------------------------------------


def test_from_update_keeps_unset_apart_from_null() -> None:
    change = LeadChange.from_update(LeadUpdate.model_validate({"assigned_to": None, "note": "hi"}), "US")
    assert change.assigned_to is None  # given as null: clears the assignee
    assert change.status is UNSET and change.follow_up_date is UNSET and change.deal_value is UNSET
    assert change.contact == {} and change.note == "hi"


def test_from_update_normalises_the_phone_and_refuses_nulls_a_field_cannot_take() -> None:
    change = LeadChange.from_update(LeadUpdate.model_validate({"phone": "(555) 123-4567"}), "US")
    assert change.contact == {"phone": "+15551234567"}
    assert LeadChange.from_update(LeadUpdate.model_validate({"phone": None}), "US").contact == {"phone": None}
    for body, field in (
        ({"email": None}, "email"),
        ({"status": None}, "status"),
        ({"qualification_status": None}, "qualification_status"),
        ({"phone": "12"}, "phone"),
    ):
        with pytest.raises(ApiError) as caught:
            LeadChange.from_update(LeadUpdate.model_validate(body), "US")
        assert (caught.value.status, caught.value.field) == (400, field)


# -- the plan --------------------------------------------------------------------------------------------


def test_a_status_change_sets_contacted_at_and_qualification_and_is_an_activity() -> None:
    write = planned(lead(), status="qualified")
    assert write.values == {
        "status": "qualified",
        "contacted_at": NOW,
        "qualification_status": "sales_qualified",
        "updated_at": NOW,
    }
    (act,) = write.activities
    assert (act.type, act.description, act.actor, act.at) == (
        "status_changed",
        "Status changed from new to qualified",
        "sales@nexlink.website",
        NOW,
    )
    assert act.details == {"from": "new", "to": "qualified"}
    assert not write.rectification and write.audit is None


def test_refused_transitions_and_deal_values() -> None:
    with pytest.raises(ApiError) as caught:
        planned(lead(), status="closed_won")
    assert caught.value.error == "INVALID_STATUS_TRANSITION"
    with pytest.raises(ApiError) as caught:
        planned(lead(status="proposal"), deal_value=Decimal("10"))
    assert caught.value.error == "DEAL_VALUE_REQUIRES_CLOSED_WON"
    won = planned(lead(status="proposal"), status="closed_won", deal_value=Decimal("7500.00"))
    assert won.values["deal_value"] == Decimal("7500.00")
    assert [a.type for a in won.activities] == ["status_changed", "deal_value_set"]


def test_an_unchanged_value_writes_nothing() -> None:
    write = planned(lead(assigned_to="a@nexlink.website"), status="new", assigned_to="a@nexlink.website")
    assert write.values == {} and write.activities == ()
    assert planned(lead()).values == {}


def test_a_note_is_stored_encrypted() -> None:
    (act,) = planned(lead(), note="Called, wants a quote").activities
    row = act.row()
    assert row["activity_type"] == "note_added" and row["description"] == "Note added"
    assert "quote" not in str(row["metadata"])
    assert note_text(CIPHER, row["metadata"]) == "Called, wants a quote"
    assert note_text(CIPHER, None) is None and note_text(CIPHER, {"connector": "smtp"}) is None


def test_a_corrected_email_moves_the_blind_index_and_is_a_rectification() -> None:
    write = planned(lead(), contact={"email": "john.doe@company.org", "first_name": "John"})
    assert write.rectification
    assert CIPHER.decrypt(write.values["email"], "email") == "john.doe@company.org"
    assert write.values["email_hash"] == CIPHER.blind_index("john.doe@company.org")
    assert (write.values["email_domain"], write.values["company_domain"]) == ("company.org", "company.org")
    assert "first_name" not in write.values  # unchanged
    assert write.activities[0].details == {"fields": ["email"], "reason": "rectification"}
    with pytest.raises(ApiError) as caught:
        planned(lead(anonymized_at=NOW), contact={"last_name": "Doe"})
    assert caught.value.error == "ALREADY_ANONYMIZED"


# -- the activity type and the field list ----------------------------------------------------------------


def test_an_activity_row_has_the_table_columns_and_a_bounded_actor() -> None:
    row = Activity(3, "synced", "Delivered by hubspot", NOW, "x" * 150, {"connector": "hubspot"}).row()
    assert row == {
        "lead_id": 3,
        "activity_type": "synced",
        "description": "Delivered by hubspot",
        "performed_by": "x" * ACTOR_LENGTH,
        "metadata": {"connector": "hubspot"},
        "created_at": NOW,
    }
    assert Activity(3, "created", None, NOW).row()["performed_by"] == "system"


def test_the_spec_activity_types_are_all_known() -> None:
    spec = {"email_sent", "call_made", "meeting_scheduled", "proposal_sent", "status_changed", "note_added"}
    assert spec <= set(ACTIVITY_TYPES)
    assert len(set(ACTIVITY_TYPES)) == len(ACTIVITY_TYPES)


def test_the_optional_field_list_is_the_one_scoring_uses() -> None:
    assert rules.OPTIONAL_FIELDS is OPTIONAL_FIELDS


# -- apply, on a database --------------------------------------------------------------------------------


async def _stored(harness: Harness, *, days_ago: int = 0) -> Any:
    response = await harness.client.post("/v1/api/leads", json=example_lead())
    assert response.status_code == 201, response.text
    public_id = response.json()["lead_id"]
    if days_ago:
        await harness.execute(
            "UPDATE leads SET created_at = :at WHERE public_id = :id",
            at=utcnow() - timedelta(days=days_ago),
            id=public_id,
        )
    async with harness.engine.connect() as conn:
        return await repo.get_by_public_id(conn, public_id)


async def _version(harness: Harness) -> int:
    async with harness.engine.connect() as conn:
        query = select(campaigns_repo.state.c.version).where(
            campaigns_repo.state.c.campaign_id == "nextcloud-installation-2025"
        )
        return int((await conn.execute(query)).scalar_one())


async def _audit_entries(harness: Harness, public_id: str) -> list[Any]:
    async with harness.engine.connect() as conn:
        return list((await conn.execute(select(audit).where(audit.c.target_id == public_id))).all())


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_apply_writes_row_activities_audit_and_drops_the_changed_day(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    row = await _stored(harness, days_ago=3)
    before = await _version(harness)
    note = Write(row, {}, (Activity.note(CIPHER, row.id, "left a voicemail", "sales", utcnow()),))
    async with harness.engine.begin() as conn:
        await apply(conn, [note])
    assert await _version(harness) == before  # no analytics input changed
    change = plan(row, LeadChange(status="contacted"), cipher=CIPHER, actor=SALES.name, now=utcnow())
    async with harness.engine.begin() as conn:
        queued = await apply(
            conn,
            [
                Write(
                    row,
                    change.values,
                    change.activities,
                    audit=Audit(SALES, "lead.update", {"fields": ["status"]}),
                )
            ],
        )
    assert queued == {}
    assert await _version(harness) == before + 1  # the lead's (closed) day is summed again
    async with harness.engine.connect() as conn:
        stored = await repo.get_by_public_id(conn, row.public_id)
        kinds = [a.activity_type for a in await repo.activities_for(conn, row.id)]
    assert stored is not None and stored.status == "contacted" and stored.contacted_at is not None
    assert kinds == ["created", "note_added", "status_changed"]
    (entry,) = await _audit_entries(harness, row.public_id)
    assert (entry.action, entry.actor, entry.channel, entry.request_id) == (
        "lead.update",
        SALES.name,
        "api",
        "req-1",
    )
    assert entry.details == {"fields": ["status"]}


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_the_audit_entry_commits_with_the_change_or_not_at_all(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    row = await _stored(harness)
    write = plan(
        row,
        LeadChange(assigned_to="sales@nexlink.website"),
        cipher=CIPHER,
        actor=SALES.name,
        now=utcnow(),
        audit=Audit(SALES, "lead.update"),
    )
    with pytest.raises(RuntimeError):
        async with harness.engine.begin() as conn:
            await apply(conn, [write])
            raise RuntimeError("the boundary fails after the change")
    assert await _audit_entries(harness, row.public_id) == []
    async with harness.engine.connect() as conn:
        count = select(func.count()).where(repo.activities.c.lead_id == row.id)
        assert (await conn.execute(count)).scalar_one() == 1  # only "created"


async def test_a_change_through_the_api_is_seen_by_cached_analytics_at_once(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(analytics_cache_seconds=30.0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            harness = Harness(app, client, state_of(app).engine, settings)
            admin = await harness.token("admin")
            created = await client.post(
                "/v1/api/campaigns",
                headers=admin,
                json={"id": "nextcloud-installation-2025", "name": "Nextcloud", "campaign_type": "service"},
            )
            assert created.status_code == 201, created.text
            lead_id = (await client.post("/v1/api/leads", json=example_lead())).json()["lead_id"]
            url = "/v1/api/campaigns/nextcloud-installation-2025/analytics"
            first = (await client.get(url, headers=admin)).json()["metrics"]
            assert first["revenue_generated"] == 0
            for body in ({"status": "contacted"}, {"status": "closed_won", "deal_value": 5000}):
                patched = await client.patch(f"/v1/api/leads/{lead_id}", headers=admin, json=body)
                assert patched.status_code == 200, patched.text
            again = (await client.get(url, headers=admin)).json()["metrics"]
            assert again["revenue_generated"] == 5000  # not the cached figures of before the change
