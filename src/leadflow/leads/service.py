"""Lead management rules: reading (decrypted), listing, and updates (applied by :mod:`leadflow.leads.changes`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow
from leadflow.kit.pagination import encode_cursor
from leadflow.leads import changes
from leadflow.leads import repository as repo
from leadflow.leads.activities import note_text
from leadflow.leads.capture import RESPONSE_TIMES
from leadflow.leads.models import PII_FIELDS
from leadflow.leads.schemas import (
    Activity,
    GeoLocation,
    LeadDetail,
    LeadEnrichment,
    LeadPage,
    LeadStatusResponse,
    LeadSummary,
    LeadUpdate,
)
from leadflow.security.audit import Actor
from leadflow.security.crypto import FieldCipher

if TYPE_CHECKING:
    from leadflow.campaigns.analytics import AnalyticsCache
    from leadflow.config import Settings

NEXT_ACTION = {
    "new": "Awaiting first contact",
    "contacted": "Awaiting a reply from the lead",
    "qualified": "Prepare a proposal",
    "proposal": "Awaiting a decision on the proposal",
    "closed_won": "None: the deal is won",
    "closed_lost": "None: the lead is closed",
}


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


def _activity_out(cipher: FieldCipher, a: AnyRow) -> Activity:
    description = a.description
    meta = a.metadata
    if a.activity_type == "note_added" and (note := note_text(cipher, meta)) is not None:
        description, meta = note, None
    return Activity(
        activity_type=a.activity_type,
        description=description,
        performed_by=a.performed_by,
        metadata=meta,
        created_at=a.created_at,
    )


async def update(
    conn: AsyncConnection,
    cipher: FieldCipher,
    public_id: str,
    body: LeadUpdate,
    actor: Actor,
    *,
    only_assigned_to: str | None = None,
    settings: Settings | None = None,
    analytics: AnalyticsCache | None = None,
) -> list[str]:
    """Apply a salesperson's change (:mod:`leadflow.leads.changes`): activities, analytics, audit entry.

    Raises 409 on a bad transition. Corrected contact fields are re-encrypted and the tools that synced
    the lead get it again; a ``do_not_sell`` change applies to the person (all leads with the e-mail)
    through the consent service. Returns the names of the tools a correction was queued for.
    """
    row = await repo.lock_for_update(conn, public_id)
    if row is None or not _visible(row, only_assigned_to):
        raise ApiError(404, "LEAD_NOT_FOUND", "Lead not found", field="lead_id")
    region = settings.default_phone_region if settings is not None else "US"
    audit = changes.Audit(actor, "lead.update", {"fields": sorted(body.model_fields_set)})
    write = changes.plan(
        row,
        changes.LeadChange.from_update(body, region),
        cipher=cipher,
        actor=actor.name,
        now=utcnow(),
        audit=audit,
    )
    queued = (await changes.apply(conn, [write], settings=settings, analytics=analytics)).get(row.id, [])
    if "do_not_sell" in body.model_fields_set and body.do_not_sell is None:
        raise ApiError(400, "VALIDATION_ERROR", "do_not_sell cannot be null", field="do_not_sell")
    dns = body.do_not_sell
    if dns is not None and bool(dns) != bool(row.do_not_sell) and settings is not None:
        from leadflow.privacy import consent

        await consent.change(
            conn,
            cipher,
            settings,
            digest=str(write.values.get("email_hash", row.email_hash)),
            action="do_not_sell" if dns else "allow_sale",
            channel="lead_update",
            actor=actor.name,
            request_id=actor.request_id,
            details={"lead_id": row.public_id},
        )
    return queued
