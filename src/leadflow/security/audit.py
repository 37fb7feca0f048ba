"""The append-only audit log: who read or changed what, when, from where, through which channel.

There is no update or delete anywhere in the code for these rows (and no endpoint for it); the
admin API only lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Request
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadflow.kit.clock import utcnow
from leadflow.kit.models import AnyRow, table_of
from leadflow.security.audit_models import AuditEntry
from leadflow.security.tokens import Principal

audit = table_of(AuditEntry)


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    role: str | None
    channel: str  # api | dashboard | cli | worker
    ip: str | None = None
    request_id: str | None = None

    @classmethod
    def from_request(cls, request: Request, principal: Principal | None, channel: str = "api") -> Actor:
        state = request.scope.get("state", {})
        return cls(
            name=principal.actor if principal else "anonymous",
            role=principal.role if principal else None,
            channel=channel,
            ip=state.get("client_ip") or (request.client.host if request.client else None),
            request_id=state.get("request_id"),
        )


CLI = Actor(name="cli", role="admin", channel="cli")


def _row(
    actor: Actor, action: str, target_type: str | None, target_id: str | None, details: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "created_at": utcnow(),
        "actor": actor.name[:100],
        "role": actor.role,
        "channel": actor.channel,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "ip": actor.ip,
        "request_id": actor.request_id,
        "details": details,
    }


async def record(
    conn: AsyncConnection,
    actor: Actor,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write one entry in the caller's transaction (a change and its audit entry commit together)."""
    await conn.execute(insert(audit).values(**_row(actor, action, target_type, target_id, details)))


async def record_now(
    engine: AsyncEngine,
    actor: Actor,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write one entry in its own transaction (reads of personal data)."""
    async with engine.begin() as conn:
        await record(conn, actor, action, target_type, target_id, details)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def page(
    conn: AsyncConnection, flt: AuditFilter, before_id: int | None, limit: int
) -> Sequence[AnyRow]:
    query = select(audit).order_by(audit.c.id.desc()).limit(limit)
    for column, value in (
        (audit.c.actor, flt.actor),
        (audit.c.action, flt.action),
        (audit.c.target_type, flt.target_type),
        (audit.c.target_id, flt.target_id),
    ):
        if value:
            query = query.where(column == value)
    if flt.since:
        query = query.where(audit.c.created_at >= flt.since)
    if flt.until:
        query = query.where(audit.c.created_at < flt.until)
    if before_id is not None:
        query = query.where(audit.c.id < before_id)
    return (await conn.execute(query)).all()
