"""SQL for privacy tombstones (kept light: the capture path imports it), consent history, used links,
and the privacy operations on a person's leads (find, erase, anonymise, retention)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.models import columns_of, rows_as, table_of
from leadflow.leads.models import Lead, LeadActivity
from leadflow.privacy.models import ConsentEvent, UnsubscribeUse
from leadflow.security.audit_models import PrivacyTombstone

tombstones = table_of(PrivacyTombstone)
events = table_of(ConsentEvent)
uses = table_of(UnsubscribeUse)
leads = table_of(Lead)
activities = table_of(LeadActivity)


@dataclass(frozen=True, slots=True)
class PersonLead:
    """What the privacy rights read of a person's lead."""

    id: int
    public_id: str
    uuid: str
    campaign_id: str
    created_at: datetime
    email: bytes  # ciphertext
    email_hash: str
    consent_given: bool
    consent_at: datetime | None
    form_version: str | None
    consent_notice_version: str | None
    privacy_regime: str | None
    do_not_sell: bool
    enrichment: dict[str, Any] | None
    anonymized_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConsentEventRow:
    """A later consent change of a person (``consent_events``)."""

    created_at: datetime
    action: str
    channel: str
    actor: str
    details: dict[str, Any] | None


PERSON_LEAD = columns_of(PersonLead, leads)
CONSENT_EVENT = columns_of(ConsentEventRow, events)


async def previously_erased(conn: AsyncConnection, hashes: list[str]) -> set[str]:
    """Which of these blind indexes belong to people who were erased before."""
    if not hashes:
        return set()
    rows = await conn.execute(select(tombstones.c.email_hash).where(tombstones.c.email_hash.in_(hashes)))
    return {r[0] for r in rows}


async def erased_since(conn: AsyncConnection, since: datetime) -> bool:
    """Whether anybody was erased (or erased again) since ``since``."""
    query = select(tombstones.c.id).where(tombstones.c.erased_at >= since).limit(1)
    return (await conn.execute(query)).first() is not None


# -- consent history and used unsubscribe links ---------------------------------------------------
async def add_consent_event(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(events).values(**row))


async def consent_events(conn: AsyncConnection, email_hash: str) -> list[ConsentEventRow]:
    query = (
        select(*CONSENT_EVENT)
        .where(events.c.email_hash == email_hash)
        .order_by(events.c.created_at, events.c.id)
    )
    return rows_as(ConsentEventRow, await conn.execute(query))


async def delete_consent_events(conn: AsyncConnection, email_hash: str) -> None:
    await conn.execute(delete(events).where(events.c.email_hash == email_hash))


async def follow_email_change(conn: AsyncConnection, old_hash: str, new_hash: str, *, copy: bool) -> None:
    """A lead's e-mail was corrected: its person's consent history goes to the new blind index, so the
    export and erasure by the new address include it. ``copy`` (another lead still has the old
    address) keeps the events under the old index too."""
    if old_hash == new_hash:
        return
    if not copy:
        await conn.execute(update(events).where(events.c.email_hash == old_hash).values(email_hash=new_hash))
        return
    rows = [
        dict(r._mapping) for r in await conn.execute(select(events).where(events.c.email_hash == old_hash))
    ]
    for row in rows:
        del row["id"]
        row["email_hash"] = new_hash
    if rows:
        await conn.execute(insert(events), rows)


async def drop_person_jobs(conn: AsyncConnection, kind: str, digest: str) -> int:
    """Delete the person's ``kind`` jobs that are not running (pending, dead, done): they carry no lead
    id, only the encrypted address and the blind index's prefix in their dedup key."""
    from leadflow.pipeline.repository import jobs

    query = delete(jobs).where(
        jobs.c.kind == kind,
        jobs.c.status != "running",
        jobs.c.dedup_key.like(f"{kind}:%:{digest[:32]}:%"),
    )
    result = await conn.execute(query)
    return int(result.rowcount or 0)


async def link_used(conn: AsyncConnection, token_hash: str) -> bool:
    found = await conn.execute(select(uses.c.token_hash).where(uses.c.token_hash == token_hash))
    return found.first() is not None


async def mark_link_used(conn: AsyncConnection, token_hash: str, now: datetime) -> None:
    """Raises IntegrityError when a concurrent request used the same link first."""
    await conn.execute(insert(uses).values(token_hash=token_hash, used_at=now))


async def purge_before(
    conn: AsyncConnection, cutoff: datetime, limit: int, links_cutoff: datetime | None = None
) -> dict[str, int]:
    """Retention for privacy records: consent events, used links and audit entries older than ``cutoff``.

    A used link is kept while the link can still verify (``links_cutoff``: now minus the links'
    lifetime, if earlier than ``cutoff``), or it would work again.
    """
    from leadflow.security.repository import audit

    links_before = min(cutoff, links_cutoff) if links_cutoff is not None else cutoff
    done: dict[str, int] = {}
    for name, table, column, key, before in (
        ("consent_events", events, events.c.created_at, events.c.id, cutoff),
        ("unsubscribe_uses", uses, uses.c.used_at, uses.c.token_hash, links_before),
        ("audit_log", audit, audit.c.created_at, audit.c.id, cutoff),
    ):
        ids = [r[0] for r in await conn.execute(select(key).where(column < before).limit(limit))]
        if ids:
            await conn.execute(delete(table).where(key.in_(ids)))
        done[name] = len(ids)
    return done


# -- a person's leads --------------------------------------------------------------------------------
async def person_leads(conn: AsyncConnection, digest: str, *, anonymised: bool = True) -> list[PersonLead]:
    """The leads whose e-mail blind index is ``digest``, oldest first (without the anonymised ones:
    ``anonymised=False``)."""
    query = select(*PERSON_LEAD).where(leads.c.email_hash == digest)
    if not anonymised:
        query = query.where(leads.c.anonymized_at.is_(None))
    return rows_as(PersonLead, await conn.execute(query.order_by(leads.c.created_at)))


async def lock_lead(conn: AsyncConnection, public_id: str) -> PersonLead | None:
    """The lead, locked for this transaction (``FOR UPDATE``; SQLite locks the database on write)."""
    query = select(*PERSON_LEAD).where(leads.c.public_id == public_id)
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    found = rows_as(PersonLead, await conn.execute(query))
    return found[0] if found else None


async def leads_created_before(
    conn: AsyncConnection, cutoff: datetime, *, anonymised: bool, limit: int
) -> list[PersonLead]:
    """Up to ``limit`` leads created before ``cutoff`` (without the anonymised ones: ``anonymised=False``)."""
    query = select(*PERSON_LEAD).where(leads.c.created_at < cutoff)
    if not anonymised:
        query = query.where(leads.c.anonymized_at.is_(None))
    return rows_as(PersonLead, await conn.execute(query.order_by(leads.c.id).limit(limit)))


async def delete_leads(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Delete these leads with their activities and jobs (pending e-mail steps included)."""
    from leadflow.pipeline.repository import jobs

    await conn.execute(delete(activities).where(activities.c.lead_id.in_(ids)))
    await conn.execute(delete(jobs).where(jobs.c.lead_id.in_(ids)))
    await conn.execute(delete(leads).where(leads.c.id.in_(ids)))


async def set_lead_values(conn: AsyncConnection, ids: Sequence[int], values: dict[str, Any]) -> None:
    await conn.execute(update(leads).where(leads.c.id.in_(ids)).values(**values))


async def scrub_notes(conn: AsyncConnection, lead_id: int) -> None:
    """Notes may quote the person: keep the event, drop the words."""
    await conn.execute(
        update(activities)
        .where(activities.c.lead_id == lead_id, activities.c.activity_type == "note_added")
        .values(description="Note removed (anonymised)", metadata=None)
    )


# -- tombstones ---------------------------------------------------------------------------------------
async def erased_at(conn: AsyncConnection, digest: str) -> datetime | None:
    """When the person was (last) erased, if ever."""
    query = select(tombstones.c.erased_at).where(tombstones.c.email_hash == digest)
    value = (await conn.execute(query)).scalar()
    return value if isinstance(value, datetime) else None


async def mark_erased(
    conn: AsyncConnection, digest: str, now: datetime, reason: str, request_id: str | None
) -> None:
    """Leave (or refresh) the person's tombstone: only the blind index, the time and the reason."""
    existing = (await conn.execute(select(tombstones.c.id).where(tombstones.c.email_hash == digest))).first()
    if existing is None:
        await conn.execute(
            insert(tombstones).values(
                email_hash=digest, erased_at=now, reason=reason[:50], request_id=request_id
            )
        )
    else:
        await conn.execute(update(tombstones).where(tombstones.c.id == existing.id).values(erased_at=now))
