"""Privacy rights: access (export), deletion (erase with tombstone), anonymisation and retention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.config import Settings
from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow
from leadflow.kit.text import email_index_form, normalise_email
from leadflow.leads import changes
from leadflow.leads import service as leads_service
from leadflow.leads.activities import Activity
from leadflow.leads.models import PII_FIELDS
from leadflow.pipeline import repository as jobs_repo
from leadflow.privacy import consent
from leadflow.privacy import repository as privacy_repo
from leadflow.privacy.repository import PersonLead
from leadflow.privacy.tasks import ERASE_JOB, UNSUBSCRIBE_JOB, remote_jobs
from leadflow.security.crypto import FieldCipher

__all__ = ["ERASE_JOB", "ErasureResult", "anonymize", "enforce_retention", "erase", "export"]


def email_hash(cipher: FieldCipher, email: str) -> str:
    try:
        normal = normalise_email(email)
    except ValueError as exc:
        raise ApiError(400, "VALIDATION_ERROR", "Invalid email format", field="email") from exc
    return cipher.blind_index(email_index_form(normal))


async def export(conn: AsyncConnection, cipher: FieldCipher, email: str) -> dict[str, Any]:
    """Right of access: every record about the person (their leads with activities, consents, erasures)."""
    digest = email_hash(cipher, email)
    records = []
    rows = await privacy_repo.person_leads(conn, digest)
    for row in rows:
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
    erased_before = await privacy_repo.erased_at(conn, digest)
    events = await privacy_repo.consent_events(conn, digest)
    return {
        "email": email,
        "generated_at": utcnow().isoformat(),
        "leads": records,
        "consent_history": consent.history(rows, events),
        "erased_before": erased_before.isoformat() if erased_before else None,
    }


@dataclass(frozen=True, slots=True)
class ErasureResult:
    leads_deleted: int
    remote_deletions_queued: list[str]
    # Configured tools that hold nothing to erase or cannot delete, and what that means (connector facts).
    notes: dict[str, str]


async def erase(
    conn: AsyncConnection,
    cipher: FieldCipher,
    settings: Settings,
    email: str,
    reason: str,
    request_id: str | None,
) -> ErasureResult:
    """Right to deletion: delete the person's leads, activities, pending jobs (the e-mail sequence
    included) and consent history, queue deletion at every configured tool that can erase (connectors
    with the ``Erases`` trait: CRM records, marketing contacts, the webhook's ``lead.erased`` event), and
    leave a tombstone holding only the blind index."""
    from leadflow.integrations import registry
    from leadflow.integrations.base import Erases

    digest = email_hash(cipher, email)
    rows = await privacy_repo.person_leads(conn, digest)
    now = utcnow()
    ids = [r.id for r in rows]
    await privacy_repo.delete_consent_events(conn, digest)
    # Queued unsubscribes of the person (no lead id): the erasure supersedes them.
    await privacy_repo.drop_person_jobs(conn, UNSUBSCRIBE_JOB, digest)
    if ids:
        await privacy_repo.delete_leads(conn, ids)
        await changes.deleted(conn, rows)
    await privacy_repo.mark_erased(conn, digest, now, reason, request_id)
    # The address is needed to delete it elsewhere: encrypted in the job, and scrubbed once done.
    queued, new_jobs = remote_jobs(
        ERASE_JOB,
        settings,
        cipher,
        email=normalise_email(email),
        digest=digest,
        lead_ids=[r.public_id for r in rows],
        request_id=request_id,
        now=now,
        campaign_ids=[r.campaign_id for r in rows],
    )
    await jobs_repo.enqueue(conn, new_jobs, now)
    notes = {
        c.name: note
        for c in registry.configured(settings)
        if not isinstance(c, Erases) and (note := c.erasure_note) is not None
    }
    return ErasureResult(leads_deleted=len(ids), remote_deletions_queued=queued, notes=notes)


# Columns that are not personal fields themselves but identify or locate the person: wiped as well.
TRACES = (
    "phone_hash",
    "email_domain",
    "company_domain",
    "visitor_id",
    "session_id",
    "referrer_url",
    "landing_page_url",
    "utm_term",
    "geo_city",
    "geo_region",
    "enrichment",
    "idempotency_key",
)


def _anonymous_values(cipher: FieldCipher, row: PersonLead, now: datetime) -> dict[str, Any]:
    """Every personal field (``PII_FIELDS``: a new one is wiped without an edit here) and every trace."""
    stand_ins = {
        "first_name": "Anonymised",
        "last_name": "Lead",
        "email": f"anonymised+{row.public_id}@invalid.invalid",
    }
    values: dict[str, Any] = {
        field: cipher.encrypt(stand_ins[field], field) if field in stand_ins else None for field in PII_FIELDS
    }
    values.update(dict.fromkeys(TRACES))
    values.update(
        email_hash=cipher.blind_index(f"anonymised:{row.uuid}"),
        email_kind="anonymized",
        anonymized_at=now,
        updated_at=now,
    )
    return values


async def anonymize_rows(
    conn: AsyncConnection, cipher: FieldCipher, rows: list[PersonLead], actor: str
) -> int:
    """Wipe personal fields; keep campaign, score, grade, status, source and dates for analytics."""
    now = utcnow()
    for row in rows:
        done = Activity(
            row.id, "anonymized", "Personal data removed; campaign, score and status kept", now, actor
        )
        await changes.apply(conn, [changes.Write(row, _anonymous_values(cipher, row, now), (done,))])
        # Notes and activity texts may quote the person: keep the event, drop the words.
        await privacy_repo.scrub_notes(conn, row.id)
    return len(rows)


async def anonymize(conn: AsyncConnection, cipher: FieldCipher, public_id: str, actor: str) -> None:
    row = await privacy_repo.lock_lead(conn, public_id)
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
    # Privacy records past the cutoff removed in the same run: consent_events, unsubscribe_uses, audit_log.
    records_purged: dict[str, int] | None = None

    @property
    def progressed(self) -> bool:
        """Whether this run changed anything (another run may find more)."""
        return bool(self.done or sum((self.records_purged or {}).values()))


async def enforce_retention(
    conn: AsyncConnection, cipher: FieldCipher, settings: Settings, *, dry_run: bool, limit: int = 1000
) -> RetentionReport:
    """Leads older than the retention period are anonymised or deleted (``RETENTION_ACTION``)."""
    cutoff = utcnow() - timedelta(days=settings.retention_days)
    anonymising = settings.retention_action == "anonymize"
    rows = await privacy_repo.leads_created_before(conn, cutoff, anonymised=not anonymising, limit=limit)
    if dry_run:
        return RetentionReport(cutoff, settings.retention_action, len(rows), 0)
    # The audit log and consent history are kept within the same retention period as the leads.
    # A used unsubscribe link is remembered until it has expired, even past a shorter retention.
    links_cutoff = utcnow() - timedelta(days=settings.unsubscribe_link_days)
    purged = await privacy_repo.purge_before(conn, cutoff, limit, links_cutoff)
    if not rows:
        return RetentionReport(cutoff, settings.retention_action, 0, 0, purged)
    if settings.retention_action == "delete":
        ids = [r.id for r in rows]
        await privacy_repo.delete_leads(conn, ids)
        await changes.deleted(conn, rows)
        return RetentionReport(cutoff, "delete", len(rows), len(ids), purged)
    done = await anonymize_rows(conn, cipher, rows, "retention")
    return RetentionReport(cutoff, "anonymize", len(rows), done, purged)
