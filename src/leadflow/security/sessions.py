"""Server-side sessions of the workspace: the browser holds a random id, the database its SHA-256.

Every API process reads the same ``sessions`` table, so a sign-out, a deactivation or a password change
ends the session everywhere at once. A session ends when it has been idle for ``SESSION_IDLE_MINUTES``
or ``SESSION_MAX_HOURS`` after sign-in, whichever comes first; its ``last_seen_at`` is written at most
once a minute (or a tenth of the idle time when that is shorter).

A signed-in user acts as a :class:`SessionPrincipal`: a :class:`~leadflow.security.tokens.Principal`
whose role grants the same scopes as an API token of that role (one policy for API and workspace).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadflow.config import Settings
from leadflow.kit.clock import utcnow
from leadflow.security import repository
from leadflow.security.repository import SessionRow, UserRow
from leadflow.security.tokens import Principal

COOKIE = "lf_session"
MAX_TOKEN_LENGTH = 100


@dataclass(frozen=True, slots=True)
class SessionPrincipal(Principal):
    """A signed-in staff member (``token_id`` is 0: a session, not an API token).

    ``subject`` is the linked routing team member's e-mail (the sales "my leads" filter, as for a sales
    token's subject), else the user's own address; ``actor`` in the audit log is the user's address.
    """

    user_id: int = 0
    email: str = ""
    member_id: int | None = None
    csrf_token: str = ""

    @property
    def actor(self) -> str:
        return self.email

    @classmethod
    def of(cls, user: UserRow, csrf_token: str, expires_at: datetime) -> SessionPrincipal:
        return cls(
            token_id=0,
            name=user.name,
            role=user.role,
            subject=user.member_email or user.email,
            expires_at=expires_at,
            user_id=user.id,
            email=user.email,
            member_id=user.member_id,
            csrf_token=csrf_token,
        )


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle: timedelta
    absolute: timedelta

    @classmethod
    def of(cls, settings: Settings) -> SessionPolicy:
        return cls(
            idle=timedelta(minutes=settings.session_idle_minutes),
            absolute=timedelta(hours=settings.session_max_hours),
        )

    @property
    def touch_every(self) -> timedelta:
        return min(timedelta(minutes=1), self.idle / 10)

    def alive(self, session: SessionRow, now: datetime) -> bool:
        return now < session.expires_at and now - session.last_seen_at < self.idle


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # the cookie's value (never stored)
    csrf_token: str
    expires_at: datetime


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start(conn: AsyncConnection, user: UserRow, policy: SessionPolicy) -> NewSession:
    """A new session for ``user`` (the caller ends the browser's previous one: rotation at sign-in)."""
    now = utcnow()
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + policy.absolute
    await repository.insert_session(
        conn, id_hash=digest(token), user_id=user.id, csrf_secret=csrf, now=now, expires_at=expires
    )
    return NewSession(token, csrf, expires)


async def end(conn: AsyncConnection, token: str | None) -> None:
    if token and len(token) <= MAX_TOKEN_LENGTH:
        await repository.delete_session(conn, digest(token))


async def resolve(
    engine: AsyncEngine,
    token: str | None,
    policy: SessionPolicy,
    reads: Callable[[], AbstractAsyncContextManager[AsyncConnection]] | None = None,
) -> SessionPrincipal | None:
    """The signed-in user of a session cookie; None when the session is unknown, expired or the user
    is deactivated (an expired session is deleted). ``reads`` opens the connection of the look-up
    (``AppState.reads``; default: the engine's)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    id_hash = digest(token)
    async with (reads or engine.connect)() as conn:
        session = await repository.session_by_hash(conn, id_hash)
    if session is None:
        return None
    now = utcnow()
    if not policy.alive(session, now) or not session.user.active:
        async with engine.begin() as conn:
            await repository.delete_session(conn, id_hash)
        return None
    if now - session.last_seen_at >= policy.touch_every:
        async with engine.begin() as conn:
            await repository.touch_session(conn, id_hash, now)
    return SessionPrincipal.of(session.user, session.csrf_secret, session.expires_at)
