"""API tokens: creation, look-up by hash, roles and the scopes each role grants."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadflow.kit.cache import SingleFlightCache
from leadflow.kit.clock import utcnow
from leadflow.security import repository as repo
from leadflow.security.models import ROLES
from leadflow.security.repository import tokens as tokens  # the table (the SQL is in the repository)

TOKEN_PREFIX = "lf_"  # noqa: S105 - a prefix, not a secret

SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "leads:create",
            "leads:read",
            "leads:write",
            "leads:status",
            "campaigns:read",
            "campaigns:write",
            "analytics:read",
            "privacy:write",
            "metrics",
            "admin",
        }
    ),
    "manager": frozenset(
        {
            "leads:create",
            "leads:read",
            "leads:write",
            "leads:status",
            "campaigns:read",
            "campaigns:write",
            "analytics:read",
            "privacy:write",
        }
    ),
    "sales": frozenset({"leads:read", "leads:write", "leads:status", "campaigns:read"}),
    "analyst": frozenset({"leads:status", "campaigns:read", "analytics:read"}),
    "ingest": frozenset({"leads:create"}),
    "monitoring": frozenset({"metrics"}),  # a Prometheus server scraping /metrics from elsewhere
}
assert set(SCOPES) == set(ROLES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: int
    name: str
    role: str
    subject: str | None
    expires_at: datetime | None

    @property
    def scopes(self) -> frozenset[str]:
        return SCOPES[self.role]

    @property
    def actor(self) -> str:
        return self.subject or f"token:{self.name}"


@dataclass(frozen=True, slots=True)
class NewToken:
    token: str
    id: int
    name: str
    role: str


async def create_token(
    conn: AsyncConnection,
    *,
    name: str,
    role: str,
    subject: str | None = None,
    expires_in: timedelta | None = None,
) -> NewToken:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    pk = await repo.insert_token(
        conn,
        {
            "name": name,
            "role": role,
            "subject": subject,
            "token_hash": hash_token(secret),
            "prefix": secret[:10],
            "created_at": now,
            "expires_at": now + expires_in if expires_in else None,
        },
    )
    return NewToken(token=secret, id=pk, name=name, role=role)


class TokenStore:
    """Resolves bearer tokens; caches hits briefly and records last use at most once a minute."""

    def __init__(self, engine: AsyncEngine, ttl: float = 10.0) -> None:
        self._engine = engine
        self._cache: SingleFlightCache[str, Principal | None] = SingleFlightCache(ttl, self._load)
        self._last_touch: dict[int, float] = {}

    def forget(self) -> None:
        self._cache.invalidate()

    async def resolve(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = hash_token(token)
        now_mono = time.monotonic()
        principal = await self._cache.get(digest)
        if principal is None:
            return None
        if principal.expires_at is not None and principal.expires_at <= utcnow():
            return None
        if now_mono - self._last_touch.get(principal.token_id, 0.0) > 60:
            self._last_touch[principal.token_id] = now_mono
            async with self._engine.begin() as conn:
                await repo.touch_token(conn, principal.token_id, utcnow())
        return principal

    async def _load(self, digest: str) -> Principal | None:
        async with self._engine.connect() as conn:
            row = await repo.token_by_hash(conn, digest)
        if row is None or row.revoked_at is not None:
            return None
        return Principal(row.id, row.name, row.role, row.subject, row.expires_at)


ROLE_HINTS: dict[str, str] = {
    "admin": "everything, including tokens, team and audit",
    "manager": "leads, campaigns, analytics, privacy requests",
    "sales": "the leads of one salesperson (set the subject to their e-mail)",
    "analyst": "analytics and campaign figures, no contact data",
    "ingest": "only posting leads (a server-side form handler)",
    "monitoring": "only /metrics",
}
assert set(ROLE_HINTS) == set(ROLES)
MAX_NAME = 100  # api_tokens.name
MAX_SUBJECT = 100  # api_tokens.subject


def check_new_token(name: str, role: str, subject: str | None, expires_days: int | None) -> dict[str, str]:
    """What is wrong with a token request, per field (empty when it may be created)."""
    problems: dict[str, str] = {}
    if not name.strip():
        problems["name"] = "Give the token a name (what it is for)."
    elif len(name) > MAX_NAME:
        problems["name"] = f"At most {MAX_NAME} characters."
    if role not in ROLES:
        problems["role"] = f"Choose one of {', '.join(ROLES)}."
    if subject is not None and len(subject) > MAX_SUBJECT:
        problems["subject"] = f"At most {MAX_SUBJECT} characters."
    if expires_days is not None and not 1 <= expires_days <= 3650:
        problems["expires_days"] = "Between 1 and 3650 days, or empty for no expiry."
    return problems


async def list_tokens(conn: AsyncConnection) -> list[repo.TokenRow]:
    """Every token, oldest first, without secrets or hashes."""
    return await repo.list_tokens(conn)


async def revoke_token(conn: AsyncConnection, token_id: int) -> bool:
    """Revoke an active token now; False when no active token has this id. Servers stop accepting it
    within :class:`TokenStore`'s cache lifetime (at once in the process that calls ``forget()``)."""
    return await repo.revoke_token(conn, token_id, utcnow())


async def active_token_exists(conn: AsyncConnection, name: str) -> bool:
    """Whether a token of this name is neither revoked nor expired (``quickstart`` mints one only once)."""
    return await repo.active_token_exists(conn, name, utcnow())
