"""SQL for security: API tokens, the audit log, and key rotation's re-encryption of stored ciphertexts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.models import columns_of, rows_as, table_of
from leadflow.leads.models import PII_FIELDS, Lead, LeadActivity
from leadflow.pipeline.models import MaintenanceState
from leadflow.security.audit_models import AuditEntry
from leadflow.security.models import ApiToken

tokens = table_of(ApiToken)
audit = table_of(AuditEntry)
leads = table_of(Lead)
activities = table_of(LeadActivity)
maintenance = table_of(MaintenanceState)


# --- API tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token as listed (never its secret or hash)."""

    id: int
    name: str
    role: str
    subject: str | None
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


TOKEN = columns_of(TokenRow, tokens)


async def insert_token(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(insert(tokens).values(**values))
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def token_by_hash(conn: AsyncConnection, digest: str) -> TokenRow | None:
    found = rows_as(TokenRow, await conn.execute(select(*TOKEN).where(tokens.c.token_hash == digest)))
    return found[0] if found else None


async def list_tokens(conn: AsyncConnection) -> list[TokenRow]:
    return rows_as(TokenRow, await conn.execute(select(*TOKEN).order_by(tokens.c.id)))


async def touch_token(conn: AsyncConnection, token_id: int, now: datetime) -> None:
    await conn.execute(update(tokens).where(tokens.c.id == token_id).values(last_used_at=now))


async def revoke_token(conn: AsyncConnection, token_id: int, now: datetime) -> bool:
    """Revoke an active token; False when there is no active token with this id."""
    result = await conn.execute(
        update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(result.rowcount)


# --- the audit log ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    created_at: datetime
    actor: str
    role: str | None
    channel: str
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    request_id: str | None
    details: dict[str, Any] | None


AUDIT = columns_of(AuditRow, audit)


async def insert_audit(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if len(rows) == 1:
        await conn.execute(insert(audit).values(**rows[0]))
    elif rows:
        await conn.execute(insert(audit), list(rows))


async def audit_page(
    conn: AsyncConnection,
    equal: Sequence[tuple[str, str | None]],
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[AuditRow]:
    """Newest first: entries whose columns in ``equal`` have the given values (a None or empty value is
    no constraint), created in [since, until), with an id below ``before_id``."""
    query = select(*AUDIT).order_by(audit.c.id.desc()).limit(limit)
    for name, value in equal:
        if value:
            query = query.where(audit.c[name] == value)
    if since:
        query = query.where(audit.c.created_at >= since)
    if until:
        query = query.where(audit.c.created_at < until)
    if before_id is not None:
        query = query.where(audit.c.id < before_id)
    return rows_as(AuditRow, await conn.execute(query))


# --- re-encryption (key rotation) ---------------------------------------------------------------------


async def maintenance_value(conn: AsyncConnection, name: str) -> dict[str, Any]:
    row = (await conn.execute(select(maintenance.c.value).where(maintenance.c.name == name))).first()
    return dict(row[0]) if row else {}


async def save_maintenance_value(
    conn: AsyncConnection, name: str, value: dict[str, Any], now: datetime
) -> None:
    changed = await conn.execute(
        update(maintenance).where(maintenance.c.name == name).values(value=value, updated_at=now)
    )
    if not changed.rowcount:
        await conn.execute(insert(maintenance).values(name=name, value=value, updated_at=now))


@dataclass(frozen=True, slots=True)
class SealedLead:
    """A lead's id and its encrypted personal fields (name → ciphertext or None)."""

    id: int
    fields: dict[str, bytes | None]


async def sealed_leads_after(conn: AsyncConnection, last_id: int, limit: int) -> list[SealedLead]:
    query = (
        select(leads.c.id, *(leads.c[f] for f in PII_FIELDS))
        .where(leads.c.id > last_id)
        .order_by(leads.c.id)
        .limit(limit)
    )
    return [
        SealedLead(int(row.id), {name: row._mapping[name] for name in PII_FIELDS})
        for row in await conn.execute(query)
    ]


async def set_lead_fields(conn: AsyncConnection, lead_id: int, values: dict[str, Any]) -> None:
    await conn.execute(update(leads).where(leads.c.id == lead_id).values(**values))


@dataclass(frozen=True, slots=True)
class NoteRow:
    id: int
    metadata: dict[str, Any] | None


async def notes_after(conn: AsyncConnection, last_id: int, limit: int) -> list[NoteRow]:
    query = (
        select(activities.c.id, activities.c.metadata)
        .where(activities.c.id > last_id, activities.c.activity_type == "note_added")
        .order_by(activities.c.id)
        .limit(limit)
    )
    return rows_as(NoteRow, await conn.execute(query))


async def set_activity_metadata(conn: AsyncConnection, activity_id: int, metadata: dict[str, Any]) -> None:
    await conn.execute(update(activities).where(activities.c.id == activity_id).values(metadata=metadata))
