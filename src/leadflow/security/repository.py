"""SQL for security: API tokens, the audit log, key rotation's re-encryption of stored ciphertexts, and the
workspace's staff accounts, sessions and password resets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.models import columns_of, rows_as, table_of
from leadflow.leads.models import PII_FIELDS, Lead, LeadActivity
from leadflow.pipeline.models import MaintenanceState
from leadflow.routing.models import TeamMember
from leadflow.security.audit_models import AuditEntry
from leadflow.security.models import ApiToken
from leadflow.security.user_models import PasswordReset, User, UserSession

tokens = table_of(ApiToken)
audit = table_of(AuditEntry)
leads = table_of(Lead)
activities = table_of(LeadActivity)
maintenance = table_of(MaintenanceState)
users = table_of(User)
sessions = table_of(UserSession)
resets = table_of(PasswordReset)
members = table_of(TeamMember)


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


async def active_token_exists(conn: AsyncConnection, name: str, now: datetime) -> bool:
    """Whether a token of this name is neither revoked nor expired (``quickstart`` mints one only once)."""
    query = (
        select(tokens.c.id)
        .where(
            tokens.c.name == name,
            tokens.c.revoked_at.is_(None),
            tokens.c.expires_at.is_(None) | (tokens.c.expires_at > now),
        )
        .limit(1)
    )
    return (await conn.execute(query)).first() is not None


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


# --- staff accounts of the workspace, their sessions and password resets ------------------------------


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    email: str
    name: str
    role: str
    active: bool
    member_id: int | None
    member_email: str | None  # the linked routing team member's address (leads.assigned_to)
    created_at: datetime
    last_sign_in_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A session joined with its user (what every signed-in request needs, in one query)."""

    id_hash: str
    csrf_secret: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    user: UserRow


_USER_COLUMNS = (
    users.c.id,
    users.c.email,
    users.c.name,
    users.c.role,
    users.c.active,
    users.c.member_id,
    members.c.email.label("member_email"),
    users.c.created_at,
    users.c.last_sign_in_at,
)
_FROM = users.outerjoin(members, members.c.id == users.c.member_id)


def _user(row: object) -> UserRow:
    m = row._mapping  # type: ignore[attr-defined]
    return UserRow(
        id=int(m["id"]),
        email=m["email"],
        name=m["name"],
        role=m["role"],
        active=bool(m["active"]),
        member_id=m["member_id"],
        member_email=m["member_email"],
        created_at=m["created_at"],
        last_sign_in_at=m["last_sign_in_at"],
    )


# -- users --------------------------------------------------------------------------------------------
async def insert_user(
    conn: AsyncConnection,
    *,
    email: str,
    name: str,
    role: str,
    password_hash: str,
    member_id: int | None,
    now: datetime,
) -> int:
    result = await conn.execute(
        insert(users).values(
            email=email,
            name=name,
            role=role,
            password_hash=password_hash,
            active=True,
            member_id=member_id,
            created_at=now,
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def user_by_id(conn: AsyncConnection, user_id: int) -> UserRow | None:
    row = (await conn.execute(select(*_USER_COLUMNS).select_from(_FROM).where(users.c.id == user_id))).first()
    return _user(row) if row is not None else None


async def user_by_email(conn: AsyncConnection, email: str) -> UserRow | None:
    row = (
        await conn.execute(select(*_USER_COLUMNS).select_from(_FROM).where(users.c.email == email))
    ).first()
    return _user(row) if row is not None else None


async def password_hash_of(conn: AsyncConnection, user_id: int) -> str | None:
    value = (await conn.execute(select(users.c.password_hash).where(users.c.id == user_id))).scalar()
    return str(value) if value is not None else None


async def list_users(conn: AsyncConnection) -> Sequence[UserRow]:
    rows = (await conn.execute(select(*_USER_COLUMNS).select_from(_FROM).order_by(users.c.id))).all()
    return [_user(r) for r in rows]


async def count_users(conn: AsyncConnection, role: str | None = None) -> int:
    query = select(func.count()).select_from(users)
    if role is not None:
        query = query.where(users.c.role == role)
    return int((await conn.execute(query)).scalar() or 0)


async def member_id_by_email(conn: AsyncConnection, email: str) -> int | None:
    value = (await conn.execute(select(members.c.id).where(members.c.email == email))).scalar()
    return int(value) if value is not None else None


async def set_password_hash(conn: AsyncConnection, user_id: int, password_hash: str) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))


async def set_active(conn: AsyncConnection, user_id: int, active: bool) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(active=active))


async def touch_sign_in(conn: AsyncConnection, user_id: int, now: datetime) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(last_sign_in_at=now))


# -- sessions -----------------------------------------------------------------------------------------
async def insert_session(
    conn: AsyncConnection,
    *,
    id_hash: str,
    user_id: int,
    csrf_secret: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    await conn.execute(
        insert(sessions).values(
            id_hash=id_hash,
            user_id=user_id,
            csrf_secret=csrf_secret,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
        )
    )


# Every signed-in page runs it: built once (no expression or cache key to build per request).
_SESSION_BY_HASH = (
    select(
        sessions.c.id_hash,
        sessions.c.csrf_secret,
        sessions.c.created_at.label("session_created_at"),
        sessions.c.last_seen_at,
        sessions.c.expires_at,
        *_USER_COLUMNS,
    )
    .select_from(sessions.join(_FROM, users.c.id == sessions.c.user_id))
    .where(sessions.c.id_hash == bindparam("id_hash"))
)


async def session_by_hash(conn: AsyncConnection, id_hash: str) -> SessionRow | None:
    row = (await conn.execute(_SESSION_BY_HASH, {"id_hash": id_hash})).first()
    if row is None:
        return None
    m = row._mapping
    return SessionRow(
        id_hash=m["id_hash"],
        csrf_secret=m["csrf_secret"],
        created_at=m["session_created_at"],
        last_seen_at=m["last_seen_at"],
        expires_at=m["expires_at"],
        user=_user(row),
    )


async def touch_session(conn: AsyncConnection, id_hash: str, now: datetime) -> None:
    await conn.execute(update(sessions).where(sessions.c.id_hash == id_hash).values(last_seen_at=now))


async def delete_session(conn: AsyncConnection, id_hash: str) -> None:
    await conn.execute(delete(sessions).where(sessions.c.id_hash == id_hash))


async def delete_user_sessions(conn: AsyncConnection, user_id: int) -> int:
    result = await conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    return int(result.rowcount or 0)


async def delete_stale_sessions(conn: AsyncConnection, now: datetime, idle_before: datetime) -> int:
    """Sessions past their absolute expiry or idle since ``idle_before`` (housekeeping)."""
    result = await conn.execute(
        delete(sessions).where(or_(sessions.c.expires_at <= now, sessions.c.last_seen_at < idle_before))
    )
    return int(result.rowcount or 0)


# -- password resets ----------------------------------------------------------------------------------
async def insert_reset(
    conn: AsyncConnection, *, token_hash: str, user_id: int, now: datetime, expires_at: datetime
) -> None:
    await conn.execute(
        insert(resets).values(token_hash=token_hash, user_id=user_id, created_at=now, expires_at=expires_at)
    )


async def usable_reset(conn: AsyncConnection, token_hash: str, now: datetime) -> int | None:
    """The user id of an unused, unexpired reset token (None otherwise)."""
    value = (
        await conn.execute(
            select(resets.c.user_id).where(
                resets.c.token_hash == token_hash, resets.c.used_at.is_(None), resets.c.expires_at > now
            )
        )
    ).scalar()
    return int(value) if value is not None else None


async def use_reset(conn: AsyncConnection, token_hash: str, now: datetime) -> bool:
    """Mark the token used (exactly once: False when another request used it first)."""
    result = await conn.execute(
        update(resets)
        .where(resets.c.token_hash == token_hash, resets.c.used_at.is_(None), resets.c.expires_at > now)
        .values(used_at=now)
    )
    return bool(result.rowcount)


async def void_resets(conn: AsyncConnection, user_id: int, now: datetime) -> None:
    """Every open reset link of the user stops working (a new one, a password change, deactivation)."""
    await conn.execute(
        update(resets).where(resets.c.user_id == user_id, resets.c.used_at.is_(None)).values(used_at=now)
    )
