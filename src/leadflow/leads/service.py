"""Lead management rules: reading (decrypted), listing, status transitions and updates."""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns import rollup
from leadflow.config import Settings
from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow
from leadflow.kit.pagination import encode_cursor
from leadflow.leads import repository as repo
from leadflow.leads.capture import RESPONSE_TIMES
from leadflow.leads.models import PII_FIELDS
from leadflow.leads.schemas import (
    CONTACT_FIELDS,
    Activity,
    GeoLocation,
    LeadDetail,
    LeadEnrichment,
    LeadPage,
    LeadStatusResponse,
    LeadSummary,
    LeadUpdate,
)
from leadflow.security.crypto import FieldCipher

# Allowed status changes. closed_won is final; a lost lead can be reopened.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"contacted", "qualified", "closed_lost"}),
    "contacted": frozenset({"qualified", "proposal", "closed_won", "closed_lost"}),
    "qualified": frozenset({"contacted", "proposal", "closed_won", "closed_lost"}),
    "proposal": frozenset({"qualified", "closed_won", "closed_lost"}),
    "closed_won": frozenset(),
    "closed_lost": frozenset({"new", "contacted"}),
}
# What a status change implies for qualification_status.
# Columns campaign analytics are computed from (a change drops the lead's day from the stored sums).
ANALYTICS_INPUTS = {"status", "qualification_status", "lead_score", "deal_value", "source", "utm_content"}
QUALIFICATION_ON = {"qualified": "sales_qualified", "closed_won": "customer", "closed_lost": "lost"}
NEXT_ACTION = {
    "new": "Awaiting first contact",
    "contacted": "Awaiting a reply from the lead",
    "qualified": "Prepare a proposal",
    "proposal": "Awaiting a decision on the proposal",
    "closed_won": "None: the deal is won",
    "closed_lost": "None: the lead is closed",
}


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def response_time(status: str, grade: str) -> str:
    if status == "new":
        return RESPONSE_TIMES.get(grade, "24 hours")
    if status in ("closed_won", "closed_lost"):
        return "none"
    return "24 hours"


def next_action(status: str, follow_up: datetime | None, now: datetime) -> str:
    if follow_up is not None and status not in ("closed_won", "closed_lost"):
        day = f"{follow_up:%b} {follow_up.day}"
        if follow_up >= now:
            return f"Follow-up scheduled for {day}"
        return f"Follow-up overdue since {day}"
    return NEXT_ACTION[status]


def decrypt_row(cipher: FieldCipher, row: AnyRow) -> dict[str, Any]:
    data = dict(row._mapping)
    for name in PII_FIELDS:
        data[name] = cipher.decrypt(data[name], name)
    data["lead_id"] = data["public_id"]
    return data


def status_body(row: repo.StatusRow | None, only_assigned_to: str | None = None) -> LeadStatusResponse:
    if row is None or not _visible(row, only_assigned_to):
        raise ApiError(404, "LEAD_NOT_FOUND", "Lead not found", field="lead_id")
    return LeadStatusResponse(
        lead_id=row.public_id,
        status=row.status,
        last_updated=row.updated_at,
        assigned_to=row.assigned_to,
        next_action=next_action(row.status, row.follow_up_date, utcnow()),
        estimated_response_time=response_time(row.status, row.lead_grade),
    )


async def status(
    conn: AsyncConnection, public_id: str, *, only_assigned_to: str | None = None
) -> LeadStatusResponse:
    return status_body(await repo.status_row(conn, public_id), only_assigned_to)


def _visible(row: AnyRow | repo.StatusRow | None, only_assigned_to: str | None) -> bool:
    return row is not None and (only_assigned_to is None or row.assigned_to == only_assigned_to)


async def detail(
    conn: AsyncConnection, cipher: FieldCipher, public_id: str, *, only_assigned_to: str | None = None
) -> LeadDetail:
    row = await repo.get_by_public_id(conn, public_id)
    if row is None or not _visible(row, only_assigned_to):
        raise ApiError(404, "LEAD_NOT_FOUND", "Lead not found", field="lead_id")
    data = decrypt_row(cipher, row)
    data["previous_lead_id"] = await repo.public_id_of(conn, row.previous_lead_id)
    data["enrichment"] = enrichment_of(row)
    data["first_touch"] = first_touch_of(row)
    data["activities"] = [_activity_out(cipher, a) for a in await repo.activities_for(conn, row.id)]
    return LeadDetail.model_validate(data)


def enrichment_of(row: AnyRow) -> LeadEnrichment:
    """The enrichment columns (and the company-name guess and MX verdict kept in the JSON) of a lead."""
    stored = row.enrichment if isinstance(row.enrichment, dict) else {}
    return LeadEnrichment(
        enriched_at=row.enriched_at,
        geo=GeoLocation(country=row.geo_country, region=row.geo_region, city=row.geo_city),
        email_domain_type=row.email_kind,
        mx=stored.get("mx"),
        company_domain=row.company_domain,
        company_name=stored.get("company_name_guess"),
    )


def first_touch_of(row: AnyRow) -> dict[str, Any] | None:
    """The first-touch UTM values kept at capture in ``leads.enrichment["first_touch"]``."""
    stored = row.enrichment.get("first_touch") if isinstance(row.enrichment, dict) else None
    return stored if isinstance(stored, dict) else None


async def page(
    conn: AsyncConnection, cipher: FieldCipher, flt: repo.LeadFilter, before_id: int | None, limit: int
) -> LeadPage:
    rows = await repo.list_page(conn, flt, before_id, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [LeadSummary.model_validate(decrypt_row(cipher, r)) for r in rows]
    return LeadPage(items=items, next_cursor=encode_cursor(rows[-1].id) if more and rows else None)


def _activity(
    lead_id: int, kind: str, description: str, actor: str, meta: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    return {
        "lead_id": lead_id,
        "activity_type": kind,
        "description": description,
        "performed_by": actor,
        "metadata": meta,
        "created_at": now,
    }


def _note_activity(cipher: FieldCipher, lead_id: int, note: str, actor: str, now: datetime) -> dict[str, Any]:
    """Notes are free text about a person: stored encrypted like the lead's own personal fields."""
    sealed = cipher.encrypt(note, "note")
    assert sealed is not None
    return _activity(
        lead_id, "note_added", "Note added", actor, {"note": base64.b64encode(sealed).decode()}, now
    )


def _activity_out(cipher: FieldCipher, a: AnyRow) -> Activity:
    description = a.description
    meta = a.metadata
    if a.activity_type == "note_added" and meta and "note" in meta:
        description = cipher.decrypt(base64.b64decode(meta["note"]), "note")
        meta = None
    return Activity(
        activity_type=a.activity_type,
        description=description,
        performed_by=a.performed_by,
        metadata=meta,
        created_at=a.created_at,
    )


def _corrections(
    cipher: FieldCipher, row: AnyRow, changes: dict[str, Any], phone_region: str
) -> tuple[dict[str, Any], list[str]]:
    """Rectified contact fields: the re-encrypted columns (and, for the e-mail, its blind index, domain
    and kind, so de-duplication and look-ups follow the new address) and the names of fields changed."""
    from leadflow.enrichment.email_domain import classify_domain
    from leadflow.kit.text import email_index_form, normalise_phone

    values: dict[str, Any] = {}
    changed: list[str] = []
    for name in CONTACT_FIELDS:
        if name not in changes:
            continue
        value = changes[name]
        if value is None and name in ("first_name", "last_name", "email"):
            raise ApiError(400, "VALIDATION_ERROR", f"{name} cannot be null", field=name)
        if name == "phone" and value is not None:
            try:
                value = normalise_phone(value, phone_region)
            except ValueError as exc:
                raise ApiError(400, "VALIDATION_ERROR", "Invalid phone number", field="phone") from exc
        if value == cipher.decrypt(getattr(row, name), name):
            continue
        values[name] = cipher.encrypt(value, name)
        changed.append(name)
        if name == "email":
            domain = value.rsplit("@", 1)[1]
            kind = classify_domain(domain)
            values.update(
                email_hash=cipher.blind_index(email_index_form(value)),
                email_domain=domain,
                email_kind=kind,
                company_domain=domain if kind == "business" else None,
            )
    return values, changed


async def _queue_crm_updates(
    conn: AsyncConnection, settings: Settings, row: AnyRow, now: datetime
) -> list[str]:
    """Deliver the corrected lead again to each tool that syncs corrections and already has it."""
    from leadflow.integrations import registry
    from leadflow.integrations.tasks import delivery
    from leadflow.pipeline import repository as jobs_repo

    tools = registry.resyncing(settings)
    keys = {f"deliver:{c.name}:{row.id}": c for c in tools}
    if not keys:
        return []
    synced = await jobs_repo.done_keys(conn, list(keys))
    targets = [c for k, c in keys.items() if k in synced]
    await jobs_repo.enqueue(
        conn,
        [
            delivery(
                c.name,
                c,
                row.id,
                run_at=now,
                dedup_key=f"correct:{c.name}:{row.id}:{int(now.timestamp() * 1000)}",
            )
            for c in targets
        ],
        now,
    )
    return [c.name for c in targets]


async def update(
    conn: AsyncConnection,
    cipher: FieldCipher,
    public_id: str,
    body: LeadUpdate,
    actor: str,
    *,
    only_assigned_to: str | None = None,
    settings: Settings | None = None,
    request_id: str | None = None,
) -> list[str]:
    """Apply a salesperson's change; every change becomes an activity. Raises 409 on a bad transition.

    Corrected contact fields are re-encrypted and the tools that synced the lead get it again; a
    ``do_not_sell`` change applies to the person (all leads with the e-mail) through the consent
    service. Returns the names of the tools a correction was queued for.
    """
    row = await repo.lock_for_update(conn, public_id)
    if row is None or not _visible(row, only_assigned_to):
        raise ApiError(404, "LEAD_NOT_FOUND", "Lead not found", field="lead_id")
    now = utcnow()
    changes = body.model_dump(exclude_unset=True)
    values: dict[str, Any] = {}
    acts: list[dict[str, Any]] = []
    status_now = row.status
    region = settings.default_phone_region if settings is not None else "US"
    corrected_values, corrected = _corrections(cipher, row, changes, region)
    if corrected:
        if row.anonymized_at is not None:
            raise ApiError(409, "ALREADY_ANONYMIZED", "An anonymised lead has no contact data to correct")
        values.update(corrected_values)
        acts.append(
            _activity(
                row.id,
                "updated",
                f"Contact data corrected: {', '.join(corrected)}",
                actor,
                {"fields": corrected, "reason": "rectification"},
                now,
            )
        )

    new_status = changes.get("status")
    if "status" in changes and new_status is None:
        raise ApiError(400, "VALIDATION_ERROR", "status cannot be null", field="status")
    if new_status is not None and new_status != row.status:
        if not can_transition(row.status, new_status):
            raise ApiError(
                409,
                "INVALID_STATUS_TRANSITION",
                f"A lead cannot move from {row.status} to {new_status}",
                field="status",
            )
        values["status"] = status_now = new_status
        if row.contacted_at is None and new_status != "closed_lost":
            values["contacted_at"] = now
        if new_status in QUALIFICATION_ON:
            values["qualification_status"] = QUALIFICATION_ON[new_status]
        acts.append(
            _activity(
                row.id,
                "status_changed",
                f"Status changed from {row.status} to {new_status}",
                actor,
                {"from": row.status, "to": new_status},
                now,
            )
        )

    if "qualification_status" in changes:
        if changes["qualification_status"] is None:
            raise ApiError(
                400, "VALIDATION_ERROR", "qualification_status cannot be null", field="qualification_status"
            )
        values["qualification_status"] = changes["qualification_status"]

    if "deal_value" in changes:
        deal: Decimal | None = changes["deal_value"]
        if deal is not None and status_now != "closed_won":
            raise ApiError(
                409,
                "DEAL_VALUE_REQUIRES_CLOSED_WON",
                "deal_value is set on closed_won leads",
                field="deal_value",
            )
        values["deal_value"] = deal
        acts.append(
            _activity(row.id, "deal_value_set", "Deal value recorded", actor, {"deal_value": str(deal)}, now)
        )

    if "assigned_to" in changes and changes["assigned_to"] != row.assigned_to:
        values["assigned_to"] = changes["assigned_to"]
        acts.append(
            _activity(
                row.id,
                "assigned",
                f"Assigned to {changes['assigned_to']}" if changes["assigned_to"] else "Unassigned",
                actor,
                {"from": row.assigned_to, "to": changes["assigned_to"], "reason": "manual"},
                now,
            )
        )

    if "follow_up_date" in changes:
        values["follow_up_date"] = changes["follow_up_date"]
        when = changes["follow_up_date"]
        acts.append(
            _activity(
                row.id,
                "follow_up_scheduled",
                f"Follow-up set for {when:%Y-%m-%d %H:%M} UTC" if when else "Follow-up cleared",
                actor,
                {"follow_up_date": when.isoformat() if when else None},
                now,
            )
        )

    if changes.get("note"):
        acts.append(_note_activity(cipher, row.id, changes["note"], actor, now))

    if values or acts:
        values["updated_at"] = now
        await repo.update_lead(conn, row.id, values)
        await repo.insert_activities(conn, acts)
        if ANALYTICS_INPUTS & values.keys():
            await rollup.invalidate(conn, {row.campaign_id: [row.created_at]})
    if "email_hash" in values and values["email_hash"] != row.email_hash:
        from leadflow.privacy import repository as privacy_repo

        others = await repo.count_by_email_hash(conn, row.email_hash, exclude_id=row.id)
        await privacy_repo.follow_email_change(conn, row.email_hash, values["email_hash"], copy=others > 0)
    queued: list[str] = []
    if corrected and settings is not None:
        queued = await _queue_crm_updates(conn, settings, row, now)
    if "do_not_sell" in changes and changes["do_not_sell"] is None:
        raise ApiError(400, "VALIDATION_ERROR", "do_not_sell cannot be null", field="do_not_sell")
    dns = changes.get("do_not_sell")
    if dns is not None and bool(dns) != bool(row.do_not_sell) and settings is not None:
        from leadflow.privacy import consent

        await consent.change(
            conn,
            cipher,
            settings,
            digest=str(values.get("email_hash", row.email_hash)),
            action="do_not_sell" if dns else "allow_sale",
            channel="lead_update",
            actor=actor,
            request_id=request_id,
            details={"lead_id": row.public_id},
        )
    return queued
