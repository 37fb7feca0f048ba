"""SQL for staff accounts, their sessions and password resets (security/users.py, security/sessions.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.models import table_of
from leadflow.routing.models import TeamMember
from leadflow.security.user_models import PasswordReset, User, UserSession

users = table_of(User)
sessions = table_of(UserSession)
resets = table_of(PasswordReset)
members = table_of(TeamMember)


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


async def session_by_hash(conn: AsyncConnection, id_hash: str) -> SessionRow | None:
    query = (
        select(
            sessions.c.id_hash,
            sessions.c.csrf_secret,
            sessions.c.created_at.label("session_created_at"),
            sessions.c.last_seen_at,
            sessions.c.expires_at,
            *_USER_COLUMNS,
        )
        .select_from(sessions.join(_FROM, users.c.id == sessions.c.user_id))
        .where(sessions.c.id_hash == id_hash)
    )
    row = (await conn.execute(query)).first()
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
