"""Privacy rights: access (export), deletion (erase with tombstone), anonymisation and retention."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.campaigns import rollup
from leadflow.config import Settings
from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow, table_of
from leadflow.kit.text import email_index_form, normalise_email
from leadflow.leads import repository as leads_repo
from leadflow.leads import service as leads_service
from leadflow.leads.models import Lead, LeadActivity
from leadflow.pipeline import repository as jobs_repo
from leadflow.privacy.repository import tombstones
from leadflow.security.crypto import FieldCipher

leads = table_of(Lead)
activities = table_of(LeadActivity)

ERASE_JOB = "privacy.erase"
# Connected tools that hold copies of a person and the deletion they offer.
ERASE_AT = ("hubspot", "mailchimp", "sendgrid")


def email_hash(cipher: FieldCipher, email: str) -> str:
    try:
        normal = normalise_email(email)
    except ValueError as exc:
        raise ApiError(400, "VALIDATION_ERROR", "Invalid email format", field="email") from exc
    return cipher.blind_index(email_index_form(normal))


async def _rows_for(conn: AsyncConnection, digest: str) -> list[AnyRow]:
    query = select(leads).where(leads.c.email_hash == digest).order_by(leads.c.created_at)
    return list((await conn.execute(query)).all())


async def export(conn: AsyncConnection, cipher: FieldCipher, email: str) -> dict[str, Any]:
    """Right of access: every record about the person (their leads with activities, consents, erasures)."""
    digest = email_hash(cipher, email)
    records = []
    for row in await _rows_for(conn, digest):
        detail = await leads_service.detail(conn, cipher, row.public_id)
        data = detail.model_dump(mode="json")
        data["consent"] = {
            "given": bool(row.consent_given),
            "at": row.consent_at.isoformat() if row.consent_at else None,
            "form_version": row.form_version,
            "notice_version": row.consent_notice_version,
            "ip_address": data.get("ip_address"),
        }
        data["privacy"] = {"regime": row.privacy_regime, "do_not_sell": bool(row.do_not_sell)}
        data["enrichment"] = row.enrichment
        records.append(data)
    tomb = (await conn.execute(select(tombstones).where(tombstones.c.email_hash == digest))).first()
    return {
        "email": email,
        "generated_at": utcnow().isoformat(),
        "leads": records,
        "erased_before": tomb.erased_at.isoformat() if tomb else None,
    }


@dataclass(frozen=True, slots=True)
class ErasureResult:
    leads_deleted: int
    remote_deletions_queued: list[str]


async def erase(
    conn: AsyncConnection,
    cipher: FieldCipher,
    settings: Settings,
    email: str,
    reason: str,
    request_id: str | None,
) -> ErasureResult:
    """Right to deletion: delete the person's leads and activities, queue deletion at connected tools,
    and leave a tombstone holding only the blind index."""
    from leadflow.integrations import registry

    digest = email_hash(cipher, email)
    rows = await _rows_for(conn, digest)
    now = utcnow()
    ids = [r.id for r in rows]
    if ids:
        await conn.execute(delete(activities).where(activities.c.lead_id.in_(ids)))
        await conn.execute(delete(jobs_repo.jobs).where(jobs_repo.jobs.c.lead_id.in_(ids)))
        await conn.execute(delete(leads).where(leads.c.id.in_(ids)))
        await rollup.invalidate(conn, _days_of(rows))
    existing = (await conn.execute(select(tombstones.c.id).where(tombstones.c.email_hash == digest))).first()
    if existing is None:
        await conn.execute(
            insert(tombstones).values(
                email_hash=digest, erased_at=now, reason=reason[:50], request_id=request_id
            )
        )
    else:
        await conn.execute(update(tombstones).where(tombstones.c.id == existing.id).values(erased_at=now))
    sealed = cipher.encrypt(normalise_email(email), "erasure_email")
    assert sealed is not None
    queued = []
    new_jobs = []
    for name in ERASE_AT:
        if registry.build(name, settings).configured():
            queued.append(name)
            new_jobs.append(
                jobs_repo.NewJob(
                    kind=ERASE_JOB,
                    # The address is needed to delete it elsewhere: encrypted, and scrubbed once done.
                    payload={"connector": name, "email": base64.b64encode(sealed).decode()},
                    run_at=now,
                    dedup_key=f"erase:{name}:{digest[:32]}:{int(now.timestamp())}",
                    max_attempts=10,
                )
            )
    await jobs_repo.enqueue(conn, new_jobs, now)
    return ErasureResult(leads_deleted=len(ids), remote_deletions_queued=queued)


def _anonymous_values(cipher: FieldCipher, row: AnyRow, now: datetime) -> dict[str, Any]:
    placeholder = f"anonymised+{row.public_id}@invalid.invalid"
    return {
        "first_name": cipher.encrypt("Anonymised", "first_name"),
        "last_name": cipher.encrypt("Lead", "last_name"),
        "email": cipher.encrypt(placeholder, "email"),
        "email_hash": cipher.blind_index(f"anonymised:{row.uuid}"),
        "email_domain": None,
        "company_domain": None,
        "email_kind": "anonymized",
        "phone": None,
        "company": None,
        "message": None,
        "ip_address": None,
        "user_agent": None,
        "visitor_id": None,
        "session_id": None,
        "referrer_url": None,
        "landing_page_url": None,
        "utm_term": None,
        "geo_city": None,
        "geo_region": None,
        "enrichment": None,
        "idempotency_key": None,
        "anonymized_at": now,
        "updated_at": now,
    }


async def anonymize_rows(conn: AsyncConnection, cipher: FieldCipher, rows: list[AnyRow], actor: str) -> int:
    """Wipe personal fields; keep campaign, score, grade, status, source and dates for analytics."""
    now = utcnow()
    for row in rows:
        await conn.execute(
            update(leads).where(leads.c.id == row.id).values(**_anonymous_values(cipher, row, now))
        )
        # Notes and activity texts may quote the person: keep the event, drop the words.
        await conn.execute(
            update(activities)
            .where(activities.c.lead_id == row.id, activities.c.activity_type == "note_added")
            .values(description="Note removed (anonymised)", metadata=None)
        )
        await leads_repo.insert_activities(
            conn,
            [
                {
                    "lead_id": row.id,
                    "activity_type": "anonymized",
                    "description": "Personal data removed; campaign, score and status kept",
                    "performed_by": actor,
                    "metadata": None,
                    "created_at": now,
                }
            ],
        )
    return len(rows)


async def anonymize(conn: AsyncConnection, cipher: FieldCipher, public_id: str, actor: str) -> None:
    row = await leads_repo.lock_for_update(conn, public_id)
    if row is None:
        raise ApiError(404, "LEAD_NOT_FOUND", "Lead not found", field="lead_id")
    if row.anonymized_at is not None:
        raise ApiError(409, "ALREADY_ANONYMIZED", "The lead is already anonymised")
    await anonymize_rows(conn, cipher, [row], actor)


@dataclass(frozen=True, slots=True)
class RetentionReport:
    cutoff: datetime
    action: str
    matched: int
    done: int


def _days_of(rows: Sequence[AnyRow]) -> dict[str, list[datetime]]:
    """The (campaign, creation time) of deleted leads, for the analytics sums to forget."""
    days: dict[str, list[datetime]] = {}
    for row in rows:
        days.setdefault(row.campaign_id, []).append(row.created_at)
    return days


async def enforce_retention(
    conn: AsyncConnection, cipher: FieldCipher, settings: Settings, *, dry_run: bool, limit: int = 1000
) -> RetentionReport:
    """Leads older than the retention period are anonymised or deleted (``RETENTION_ACTION``)."""
    cutoff = utcnow() - timedelta(days=settings.retention_days)
    query = select(leads).where(leads.c.created_at < cutoff)
    if settings.retention_action == "anonymize":
        query = query.where(leads.c.anonymized_at.is_(None))
    rows = list((await conn.execute(query.order_by(leads.c.id).limit(limit))).all())
    if dry_run or not rows:
        return RetentionReport(cutoff, settings.retention_action, len(rows), 0)
    if settings.retention_action == "delete":
        ids = [r.id for r in rows]
        await conn.execute(delete(activities).where(activities.c.lead_id.in_(ids)))
        await conn.execute(delete(jobs_repo.jobs).where(jobs_repo.jobs.c.lead_id.in_(ids)))
        await conn.execute(delete(leads).where(leads.c.id.in_(ids)))
        await rollup.invalidate(conn, _days_of(rows))
        return RetentionReport(cutoff, "delete", len(rows), len(ids))
    done = await anonymize_rows(conn, cipher, rows, "retention")
    return RetentionReport(cutoff, "anonymize", len(rows), done)
