"""SQL for privacy tombstones (kept light: the capture path imports it)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.db import IN_CHUNK, chunks
from leadflow.kit.models import table_of
from leadflow.security.audit_models import PrivacyTombstone

tombstones = table_of(PrivacyTombstone)


async def previously_erased(conn: AsyncConnection, hashes: list[str]) -> set[str]:
    """Which of these blind indexes belong to people who were erased before."""
    if not hashes:
        return set()
    rows = await conn.execute(select(tombstones.c.email_hash).where(tombstones.c.email_hash.in_(hashes)))
    return {r[0] for r in rows}


def previously_erased_sqlite(db: sqlite3.Connection, hashes: list[str]) -> set[str]:
    """:func:`previously_erased` on a raw sqlite3 connection (the capture writer's direct path)."""
    found: set[str] = set()
    for part in chunks(hashes, IN_CHUNK):
        marks = ",".join("?" * len(part))
        sql = f"SELECT email_hash FROM privacy_tombstones WHERE email_hash IN ({marks})"  # noqa: S608
        found.update(row[0] for row in db.execute(sql, part))
    return found


async def erased_since(conn: AsyncConnection, since: datetime) -> bool:
    """Whether anybody was erased (or erased again) since ``since``."""
    query = select(tombstones.c.id).where(tombstones.c.erased_at >= since).limit(1)
    return (await conn.execute(query)).first() is not None
