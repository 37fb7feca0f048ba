"""SQL for privacy tombstones (kept light: the capture path imports it)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.models import table_of
from leadflow.security.audit_models import PrivacyTombstone

tombstones = table_of(PrivacyTombstone)


async def previously_erased(conn: AsyncConnection, hashes: list[str]) -> set[str]:
    """Which of these blind indexes belong to people who were erased before."""
    if not hashes:
        return set()
    rows = await conn.execute(select(tombstones.c.email_hash).where(tombstones.c.email_hash.in_(hashes)))
    return {r[0] for r in rows}
