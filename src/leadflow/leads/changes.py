"""One place that applies a change to a lead (DESIGN rule 13: one change, one place).

A change to a lead is more than its row. It comes with an activity for each thing that changed; if it
touches an analytics input, the stored daily sums of the lead's day are dropped, and so are this
process's cached analytics of the campaign; a person's or tool's change gets an audit entry; and a
rectification of contact data makes the person's consent history follow a new e-mail and queues the
lead again at the tools that sync corrections. Writers say *what* changes — a :class:`Write`: the lead
as read, the column values, the activities — and :func:`apply` does all the rest, in the caller's
transaction (it flushes, the boundary commits).

A salesperson's edit (API ``PATCH``, CLI ``leads update``) is a typed :class:`LeadChange`;
:func:`plan` checks it against the lead (allowed status transitions, a deal value only on won leads,
no corrections on an anonymised lead) and turns it into a ``Write``. The worker's routing, consent
changes and anonymisation build their ``Write`` directly. Deleted leads go through :func:`deleted`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns import rollup
from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow
from leadflow.leads import repository as repo
from leadflow.leads.activities import Activity
from leadflow.leads.models import ActivityType
from leadflow.leads.schemas import CONTACT_FIELDS, LeadUpdate
from leadflow.security.audit import Actor, record

if TYPE_CHECKING:
    from leadflow.campaigns.analytics import AnalyticsCache
    from leadflow.config import Settings
    from leadflow.security.crypto import FieldCipher

# Columns campaign analytics are computed from (a change drops the lead's day and hour from the stored
# sums, ``campaigns.rollup``): the API's, the reports' and the analytics dashboard's figures.
ANALYTICS_INPUTS = frozenset(
    {
        "status",
        "qualification_status",
        "lead_score",
        "lead_grade",
        "deal_value",
        "source",
        "channel",
        "utm_content",
        "assigned_to",
        "contacted_at",
    }
)
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
QUALIFICATION_ON = {"qualified": "sales_qualified", "closed_won": "customer", "closed_lost": "lost"}
NOT_NULL_CONTACT = ("first_name", "last_name", "email")
# The spec's activity types a salesperson logs by hand (what happened outside Leadflow), and their text.
LOGGED: dict[ActivityType, str] = {
    "call_made": "Call logged",
    "meeting_scheduled": "Meeting logged",
    "email_sent": "E-mail logged",
    "proposal_sent": "Proposal sent",
}


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


class Unset(Enum):
    """A field a :class:`LeadChange` leaves alone (``None`` is a value: it clears the field)."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadChange:
    """A salesperson's change to one lead; fields left ``UNSET`` are not changed."""

    status: str | Unset = UNSET
    qualification_status: str | Unset = UNSET
    assigned_to: str | Unset | None = UNSET
    follow_up_date: datetime | Unset | None = UNSET
    deal_value: Decimal | Unset | None = UNSET
    # Rectified contact fields (names from ``CONTACT_FIELDS``), the phone already in E.164.
    contact: Mapping[str, str | None] = field(default_factory=dict)
    note: str | None = None
    logged: ActivityType | None = None  # one of ``LOGGED``: a call, meeting, e-mail or proposal

    @classmethod
    def from_update(cls, body: LeadUpdate, phone_region: str) -> LeadChange:
        """The change a ``LeadUpdate`` asks for (``do_not_sell`` is the person's consent, not a lead field).

        Raises 400 for a null that the field cannot take and for a phone number that does not parse.
        """
        from leadflow.kit.text import normalise_phone

        given = body.model_fields_set
        contact: dict[str, str | None] = {}
        for name in CONTACT_FIELDS:
            if name not in given:
                continue
            value: str | None = getattr(body, name)
            if value is None and name in NOT_NULL_CONTACT:
                raise ApiError(400, "VALIDATION_ERROR", f"{name} cannot be null", field=name)
            if name == "phone" and value is not None:
                try:
                    value = normalise_phone(value, phone_region)
                except ValueError as exc:
                    raise ApiError(400, "VALIDATION_ERROR", "Invalid phone number", field="phone") from exc
            contact[name] = value
        for name in ("status", "qualification_status"):
            if name in given and getattr(body, name) is None:
                raise ApiError(400, "VALIDATION_ERROR", f"{name} cannot be null", field=name)
        return cls(
            status=body.status if body.status is not None else UNSET,
            qualification_status=(
                body.qualification_status if body.qualification_status is not None else UNSET
            ),
            assigned_to=body.assigned_to if "assigned_to" in given else UNSET,
            follow_up_date=body.follow_up_date if "follow_up_date" in given else UNSET,
            deal_value=body.deal_value if "deal_value" in given else UNSET,
            contact=contact,
            note=body.note,
        )


@dataclass(frozen=True, slots=True)
class Audit:
    """The audit entry of a change (target: the lead)."""

    actor: Actor
    action: str
    details: Mapping[str, Any] | None = None


class LeadRef(Protocol):
    """What a change needs of the lead it writes (a full lead row, or a repository's typed row)."""

    @property
    def id(self) -> int: ...
    @property
    def public_id(self) -> str: ...
    @property
    def campaign_id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def email_hash(self) -> str: ...


Lead: TypeAlias = "AnyRow | LeadRef"  # a string: AnyRow is one too (no runtime union of the two)


@dataclass(frozen=True, slots=True)
class Write:
    """What to write on one lead.

    ``lead`` is the row as read (locked) before the change; ``values`` the columns to set (empty: the row
    is not updated); ``rectification``: contact data was corrected (GDPR Art. 16), so the consent history
    follows a new e-mail and the tools that synced the lead get it again.
    """

    lead: Lead
    values: Mapping[str, Any]
    activities: Sequence[Activity] = ()
    rectification: bool = False
    audit: Audit | None = None


def plan(
    row: AnyRow,
    change: LeadChange,
    *,
    cipher: FieldCipher,
    actor: str,
    now: datetime,
    audit: Audit | None = None,
) -> Write:
    """Check ``change`` against the lead and say what it writes; every change becomes an activity.

    Raises 409 for a status transition that is not allowed, a deal value on a lead that is not won,
    and a correction of an anonymised lead.
    """
    values: dict[str, Any] = {}
    acts: list[Activity] = []
    corrected = _corrections(cipher, row, change.contact, values)
    if corrected:
        if row.anonymized_at is not None:
            raise ApiError(409, "ALREADY_ANONYMIZED", "An anonymised lead has no contact data to correct")
        acts.append(
            Activity(
                row.id,
                "updated",
                f"Contact data corrected: {', '.join(corrected)}",
                now,
                actor,
                {"fields": corrected, "reason": "rectification"},
            )
        )

    status_now = row.status
    new_status = change.status
    if not isinstance(new_status, Unset) and new_status != row.status:
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
            Activity(
                row.id,
                "status_changed",
                f"Status changed from {row.status} to {new_status}",
                now,
                actor,
                {"from": row.status, "to": new_status},
            )
        )

    if not isinstance(change.qualification_status, Unset):
        values["qualification_status"] = change.qualification_status

    deal = change.deal_value
    if not isinstance(deal, Unset):
        if deal is not None and status_now != "closed_won":
            raise ApiError(
                409,
                "DEAL_VALUE_REQUIRES_CLOSED_WON",
                "deal_value is set on closed_won leads",
                field="deal_value",
            )
        values["deal_value"] = deal
        acts.append(
            Activity(row.id, "deal_value_set", "Deal value recorded", now, actor, {"deal_value": str(deal)})
        )

    assignee = change.assigned_to
    if not isinstance(assignee, Unset) and assignee != row.assigned_to:
        values["assigned_to"] = assignee
        acts.append(
            Activity(
                row.id,
                "assigned",
                f"Assigned to {assignee}" if assignee else "Unassigned",
                now,
                actor,
                {"from": row.assigned_to, "to": assignee, "reason": "manual"},
            )
        )

    when = change.follow_up_date
    if not isinstance(when, Unset):
        values["follow_up_date"] = when
        acts.append(
            Activity(
                row.id,
                "follow_up_scheduled",
                f"Follow-up set for {when:%Y-%m-%d %H:%M} UTC" if when else "Follow-up cleared",
                now,
                actor,
                {"follow_up_date": when.isoformat() if when else None},
            )
        )

    if change.logged is not None:
        if change.logged not in LOGGED:
            raise ApiError(400, "VALIDATION_ERROR", "Not an activity to log", field="activity_type")
        acts.append(Activity(row.id, change.logged, LOGGED[change.logged], now, actor))
        # A logged call, meeting, e-mail or proposal is contact with the person: the first one sets
        # contacted_at (speed to lead) even when the salesperson does not move the status.
        if row.contacted_at is None and "contacted_at" not in values:
            values["contacted_at"] = now

    if change.note:
        acts.append(Activity.note(cipher, row.id, change.note, actor, now))

    if values or acts:
        values["updated_at"] = now
    return Write(row, values, tuple(acts), rectification=bool(corrected), audit=audit)


def _corrections(
    cipher: FieldCipher, row: AnyRow, contact: Mapping[str, str | None], values: dict[str, Any]
) -> list[str]:
    """Put the rectified contact fields in ``values``: re-encrypted (and, for the e-mail, its blind index,
    domain and kind, so de-duplication and look-ups follow the new address); return the names changed."""
    from leadflow.enrichment.email_domain import classify_domain
    from leadflow.kit.text import email_index_form, phone_index_form

    changed: list[str] = []
    for name in CONTACT_FIELDS:
        if name not in contact:
            continue
        value = contact[name]
        if value == cipher.decrypt(getattr(row, name), name):
            continue
        values[name] = cipher.encrypt(value, name)
        changed.append(name)
        if name == "phone":
            values["phone_hash"] = cipher.blind_index(phone_index_form(value)) if value else None
        if name == "email" and value is not None:
            domain = value.rsplit("@", 1)[1]
            kind = classify_domain(domain)
            values.update(
                email_hash=cipher.blind_index(email_index_form(value)),
                email_domain=domain,
                email_kind=kind,
                company_domain=domain if kind == "business" else None,
            )
    return changed


async def apply(
    conn: AsyncConnection,
    writes: Sequence[Write],
    *,
    settings: Settings | None = None,
    analytics: AnalyticsCache | None = None,
) -> dict[int, list[str]]:
    """Write ``writes`` in the caller's transaction, with everything a change to a lead implies.

    For each write, in order: the row update and the activity rows; if an analytics input
    (``ANALYTICS_INPUTS``) changed, the stored sums of the lead's day and hour (``campaigns.rollup``) and
    ``analytics``, this process's cache of the campaign's figures (dropped before the commit: a request
    computing meanwhile may keep the old figures for at most the cache's ttl, the bound other processes'
    changes have anyway, within the spec's 30 s); for a rectification, the consent history follows a changed e-mail and, with ``settings``, the
    lead is queued again at each tool that synced it and syncs corrections; then the audit entry.

    Audit rule: a change is audited with :func:`~leadflow.security.audit.record`, in the transaction of
    the change, never with ``record_now`` (its own transaction): the entry commits with the change or
    not at all, so a refused or rolled-back change leaves no entry and a committed one always has one.
    ``record_now`` is for reads of personal data, which have no transaction of their own to join.
    System changes (the worker's) carry no audit entry: their activities say what happened.

    Returns, per lead id, the tools a correction was queued for (leads with none are left out).
    """
    now = utcnow()
    activity_rows: list[dict[str, Any]] = []
    changed_days: list[Lead] = []
    for write in writes:
        if write.values:
            await repo.update_lead(conn, write.lead.id, dict(write.values))
        activity_rows.extend(a.row() for a in write.activities)
        if ANALYTICS_INPUTS & write.values.keys():
            changed_days.append(write.lead)
    await repo.insert_activities(conn, activity_rows)
    days = _days_of(changed_days)
    await rollup.invalidate(conn, days)
    if analytics is not None:
        for campaign_id in days:
            analytics.invalidate(campaign_id)
    queued: dict[int, list[str]] = {}
    for write in writes:
        tools: list[str] = []
        if write.rectification:
            await _follow_email(conn, write)
            if settings is not None:
                tools = await _queue_resync(conn, settings, write.lead, now)
        if tools:
            queued[write.lead.id] = tools
        if write.audit is not None:
            details = dict(write.audit.details or {})
            if tools:
                details["crm_updates"] = tools
            await record(conn, write.audit.actor, write.audit.action, "lead", write.lead.public_id, details)
    return queued


async def deleted(conn: AsyncConnection, rows: Iterable[Lead]) -> None:
    """Leads deleted in the caller's transaction (erasure, retention): their days' stored sums go."""
    await rollup.invalidate(conn, _days_of(rows))


def _days_of(rows: Iterable[Lead]) -> dict[str, list[datetime]]:
    """The (campaign, creation time) of changed or deleted leads, for the analytics sums to forget."""
    days: dict[str, list[datetime]] = {}
    for row in rows:
        days.setdefault(row.campaign_id, []).append(row.created_at)
    return days


async def _follow_email(conn: AsyncConnection, write: Write) -> None:
    """A corrected e-mail: the person's consent history moves to (or, shared, is copied to) the new index."""
    new_hash = write.values.get("email_hash")
    old_hash = write.lead.email_hash
    if new_hash is None or new_hash == old_hash:
        return
    from leadflow.privacy import repository as privacy_repo

    others = await repo.count_by_email_hash(conn, old_hash, exclude_id=write.lead.id)
    await privacy_repo.follow_email_change(conn, old_hash, new_hash, copy=others > 0)


async def _queue_resync(conn: AsyncConnection, settings: Settings, row: Lead, now: datetime) -> list[str]:
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
