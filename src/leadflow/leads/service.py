"""Lead management rules: reading (decrypted), listing, and updates (applied by :mod:`leadflow.leads.changes`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
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
from leadflow.security.tokens import Principal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from leadflow.campaigns.analytics import AnalyticsCache
    from leadflow.config import Settings
    from leadflow.routing.repository import MemberRow

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
    """The row as a dict with its personal data decrypted (the fields it has: a list reads fewer)."""
    data = dict(row._mapping)
    for name in PII_FIELDS:
        if name in data:
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
    rows = await repo.list_page(conn, flt, before_id, limit + 1, repo.SUMMARY)
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
    row = await locked(conn, public_id, only_assigned_to)
    region = settings.default_phone_region if settings is not None else "US"
    queued, write = await change(
        conn,
        cipher,
        row,
        changes.LeadChange.from_update(body, region),
        actor,
        fields=sorted(body.model_fields_set),
        settings=settings,
        analytics=analytics,
    )
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


def only_assigned_to(principal: Principal) -> str | None:
    """The leads a caller may see: a sales user only those assigned to them (their token's or
    session's subject); every other role all of them (None)."""
    if principal.role == "sales":
        return principal.subject or ""  # no subject: matches no lead (assignees are never empty)
    return None


async def locked(conn: AsyncConnection, public_id: str, only_assigned_to: str | None) -> AnyRow:
    """The lead, locked for a change, if the caller may see it (else 404 LEAD_NOT_FOUND)."""
    row = await repo.lock_for_update(conn, public_id)
    if row is None or not _visible(row, only_assigned_to):
        raise ApiError(404, "LEAD_NOT_FOUND", "Lead not found", field="lead_id")
    return row


async def change(
    conn: AsyncConnection,
    cipher: FieldCipher,
    row: AnyRow,
    lead_change: changes.LeadChange,
    actor: Actor,
    *,
    fields: list[str],
    settings: Settings | None = None,
    analytics: AnalyticsCache | None = None,
    owner: MemberRow | None = None,
) -> tuple[list[str], changes.Write]:
    """Plan and apply a person's change to a locked lead (audited as ``lead.update`` with ``fields``).

    ``owner``: the routing team member the change assigns the lead to; the lead is then linked to them
    and they are notified like a fresh assignment (:func:`notify_owner`). Returns the tools a
    correction was queued for, and the write.
    """
    now = utcnow()
    audit = changes.Audit(actor, "lead.update", {"fields": fields})
    write = changes.plan(row, lead_change, cipher=cipher, actor=actor.name, now=now, audit=audit)
    reassigned = owner is not None and write.values.get("assigned_to") == owner.email
    if reassigned and owner is not None:
        write = replace(write, values={**write.values, "assigned_member_id": owner.id})
    elif "assigned_to" in write.values and write.values["assigned_to"] is None:
        write = replace(write, values={**write.values, "assigned_member_id": None})  # nobody's now
    queued = (await changes.apply(conn, [write], settings=settings, analytics=analytics)).get(row.id, [])
    if reassigned and owner is not None and settings is not None:
        await notify_owner(conn, cipher, settings, row, write.values, owner, now)
    return queued, write


async def notify_owner(
    conn: AsyncConnection,
    cipher: FieldCipher,
    settings: Settings,
    row: AnyRow,
    values: Mapping[str, Any],
    owner: MemberRow,
    now: datetime,
) -> list[str]:
    """Queue, for a reassigned lead, the notifications a fresh assignment sends: one ``deliver`` job per
    configured connector that notifies the owner (``notifies_owner``), is allowed by the lead's privacy
    choices and wants the lead (the same rules as routing's fan-out). Returns the connector names."""
    from leadflow.campaigns import repository as campaigns_repo
    from leadflow.integrations import registry
    from leadflow.integrations.base import Assignee
    from leadflow.integrations.tasks import delivery
    from leadflow.leads.views import build_view
    from leadflow.pipeline.repository import enqueue
    from leadflow.privacy.policy import allowed

    fresh = SimpleNamespace(**{**row._mapping, **values})  # the lead as the change leaves it
    assignee = Assignee(name=owner.name, email=owner.email, phone=owner.phone)
    campaign = next(iter(await campaigns_repo.get_many(conn, [row.campaign_id])), None)
    view = build_view(cipher, fresh, assignee, campaign)
    stamp = int(now.timestamp() * 1000)
    chosen = [
        c for c in registry.configured(settings) if c.notifies_owner and allowed(c, view) and c.wants(view)
    ]
    await enqueue(
        conn,
        [
            delivery(c.name, c, row.id, run_at=now, dedup_key=f"reassign:{c.name}:{row.id}:{stamp}")
            for c in chosen
        ],
        now,
    )
    return [c.name for c in chosen]


# -- the workspace's inbox ---------------------------------------------------------------------------
INBOX_PAGE = 20  # leads per list on one screen of the inbox
INBOX_COUNT_CAP = 1000  # counts above this read "1,000+"


@dataclass(frozen=True, slots=True)
class InboxList:
    """One list of the inbox as shown: a page of leads, how many there are in all (counted up to
    :data:`INBOX_COUNT_CAP`; ``capped`` when there are more) and the cursor of the next page."""

    leads: list[LeadSummary]
    total: int
    capped: bool
    next_cursor: str | None

    @property
    def total_text(self) -> str:
        return f"{INBOX_COUNT_CAP:,}+" if self.capped else f"{self.total:,}"


@dataclass(frozen=True, slots=True)
class Inbox:
    """A person's open leads (best grade first, then oldest) and follow-ups due by the end of today."""

    open: InboxList
    due: InboxList
    mark: str

    @property
    def shown(self) -> list[str]:
        return sorted({lead.lead_id for lead in (*self.open.leads, *self.due.leads)})


@dataclass(frozen=True, slots=True)
class _Keys:
    """What an inbox screen shows, without personal data: the ids in order, the capped counts."""

    open_ids: list[int]
    due_ids: list[int]
    open_total: int
    due_total: int
    more_open: bool
    more_due: bool


async def _keys(
    conn: AsyncConnection, owner: str | None, now: datetime, open_after: int | None, due_after: int | None
) -> _Keys:
    end_of_day = datetime.combine(now.date() + timedelta(days=1), time.min, tzinfo=UTC)
    open_ids = await repo.open_ids(conn, owner, open_after, INBOX_PAGE + 1)
    due_ids = await repo.due_ids(conn, owner, end_of_day, due_after, INBOX_PAGE + 1)
    open_total, due_total = await repo.count_open(conn, owner, end_of_day, INBOX_COUNT_CAP)
    return _Keys(
        open_ids[:INBOX_PAGE],
        due_ids[:INBOX_PAGE],
        open_total,
        due_total,
        len(open_ids) > INBOX_PAGE,
        len(due_ids) > INBOX_PAGE,
    )


def _mark(keys: _Keys, updated: Mapping[int, datetime]) -> str:
    """Changes whenever the screen would: another lead on it, a shown lead changed, another count."""
    shown = [(i, updated[i].isoformat() if i in updated else "") for i in (*keys.open_ids, *keys.due_ids)]
    text = repr((shown, keys.open_total, keys.due_total, keys.more_open, keys.more_due))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


async def inbox(
    conn: AsyncConnection,
    cipher: FieldCipher,
    owner: str | None,
    now: datetime,
    *,
    open_after: int | None = None,
    due_after: int | None = None,
) -> Inbox:
    """One screen of the inbox of ``owner`` (None: everyone's): :data:`INBOX_PAGE` leads of each
    list from the leads after ``open_after`` / ``due_after`` (cursor ids); only those are decrypted."""
    keys = await _keys(conn, owner, now, open_after, due_after)
    rows = await repo.get_many(conn, {*keys.open_ids, *keys.due_ids}, columns=repo.SUMMARY)

    def shown(ids: list[int], total: int, more: bool) -> InboxList:
        found = [rows[i] for i in ids if i in rows]
        return InboxList(
            [LeadSummary.model_validate(decrypt_row(cipher, r)) for r in found],
            min(total, INBOX_COUNT_CAP),
            total > INBOX_COUNT_CAP,
            encode_cursor(ids[-1]) if more and ids else None,
        )

    return Inbox(
        shown(keys.open_ids, keys.open_total, keys.more_open),
        shown(keys.due_ids, keys.due_total, keys.more_due),
        _mark(keys, {i: r.updated_at for i, r in rows.items()}),
    )


async def inbox_mark(
    conn: AsyncConnection,
    owner: str | None,
    now: datetime,
    *,
    open_after: int | None = None,
    due_after: int | None = None,
) -> str:
    """A short text that changes whenever the inbox screen of ``owner`` would (new, changed or closed
    leads on it, or other counts): the live refresh compares it, reading the database, so it works
    across API processes. Index reads of a screen's worth of keys; nothing decrypted."""
    keys = await _keys(conn, owner, now, open_after, due_after)
    return _mark(keys, await repo.updated_at_of(conn, [*keys.open_ids, *keys.due_ids]))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One job of a lead as its page shows it: a connector's delivery (or the lead's processing)."""

    job_id: int
    kind: str
    connector: str | None
    status: str
    attempts: int
    max_attempts: int
    last_error: str | None
    updated_at: datetime


async def deliveries(conn: AsyncConnection, lead_id: str) -> list[Delivery]:
    """The jobs of a lead (by public id), oldest first."""
    row = await repo.get_by_public_id(conn, lead_id)
    if row is None:
        return []
    return [
        Delivery(
            j.id,
            j.kind,
            (j.payload or {}).get("connector"),
            j.status,
            j.attempts,
            j.max_attempts,
            j.last_error,
            j.updated_at,
        )
        for j in await repo.jobs_of_lead(conn, row.id)
    ]


async def index_phones(conn: AsyncConnection, cipher: FieldCipher, after_id: int, limit: int) -> int | None:
    """Give up to ``limit`` leads stored before the phone blind index (``phone_hash``) theirs, in id
    order after ``after_id``; returns the last id done (None: nothing left)."""
    from leadflow.kit.text import phone_index_form

    rows = await repo.phones_without_index(conn, after_id, limit)
    hashes = {}
    for row in rows:
        phone = cipher.decrypt(row.phone, "phone")
        if phone:
            hashes[int(row.id)] = cipher.blind_index(phone_index_form(phone))
    await repo.set_phone_hashes(conn, hashes)
    return int(rows[-1].id) if rows else None
