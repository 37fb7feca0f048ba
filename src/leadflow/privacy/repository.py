"""SQL for privacy tombstones (kept light: the capture path imports it), consent history, used links."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.models import AnyRow, table_of
from leadflow.privacy.models import ConsentEvent, UnsubscribeUse
from leadflow.security.audit_models import PrivacyTombstone

tombstones = table_of(PrivacyTombstone)
events = table_of(ConsentEvent)
uses = table_of(UnsubscribeUse)


async def previously_erased(conn: AsyncConnection, hashes: list[str]) -> set[str]:
    """Which of these blind indexes belong to people who were erased before."""
    if not hashes:
        return set()
    rows = await conn.execute(select(tombstones.c.email_hash).where(tombstones.c.email_hash.in_(hashes)))
    return {r[0] for r in rows}


async def erased_since(conn: AsyncConnection, since: datetime) -> bool:
    """Whether anybody was erased (or erased again) since ``since``."""
    query = select(tombstones.c.id).where(tombstones.c.erased_at >= since).limit(1)
    return (await conn.execute(query)).first() is not None


# -- consent history and used unsubscribe links ---------------------------------------------------
async def add_consent_event(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(events).values(**row))


async def consent_events(conn: AsyncConnection, email_hash: str) -> list[AnyRow]:
    query = select(events).where(events.c.email_hash == email_hash).order_by(events.c.created_at, events.c.id)
    return list((await conn.execute(query)).all())


async def delete_consent_events(conn: AsyncConnection, email_hash: str) -> None:
    await conn.execute(delete(events).where(events.c.email_hash == email_hash))


async def follow_email_change(conn: AsyncConnection, old_hash: str, new_hash: str, *, copy: bool) -> None:
    """A lead's e-mail was corrected: its person's consent history goes to the new blind index, so the
    export and erasure by the new address include it. ``copy`` (another lead still has the old
    address) keeps the events under the old index too."""
    if old_hash == new_hash:
        return
    if not copy:
        await conn.execute(update(events).where(events.c.email_hash == old_hash).values(email_hash=new_hash))
        return
    rows = [
        dict(r._mapping) for r in await conn.execute(select(events).where(events.c.email_hash == old_hash))
    ]
    for row in rows:
        del row["id"]
        row["email_hash"] = new_hash
    if rows:
        await conn.execute(insert(events), rows)


async def drop_person_jobs(conn: AsyncConnection, kind: str, digest: str) -> int:
    """Delete the person's ``kind`` jobs that are not running (pending, dead, done): they carry no lead
    id, only the encrypted address and the blind index's prefix in their dedup key."""
    from leadflow.pipeline.repository import jobs

    query = delete(jobs).where(
        jobs.c.kind == kind,
        jobs.c.status != "running",
        jobs.c.dedup_key.like(f"{kind}:%:{digest[:32]}:%"),
    )
    result = await conn.execute(query)
    return int(result.rowcount or 0)


async def link_used(conn: AsyncConnection, token_hash: str) -> bool:
    found = await conn.execute(select(uses.c.token_hash).where(uses.c.token_hash == token_hash))
    return found.first() is not None


async def mark_link_used(conn: AsyncConnection, token_hash: str, now: datetime) -> None:
    """Raises IntegrityError when a concurrent request used the same link first."""
    await conn.execute(insert(uses).values(token_hash=token_hash, used_at=now))


async def purge_before(
    conn: AsyncConnection, cutoff: datetime, limit: int, links_cutoff: datetime | None = None
) -> dict[str, int]:
    """Retention for privacy records: consent events, used links and audit entries older than ``cutoff``.

    A used link is kept while the link can still verify (``links_cutoff``: now minus the links'
    lifetime, if earlier than ``cutoff``), or it would work again.
    """
    from leadflow.security.audit import audit

    links_before = min(cutoff, links_cutoff) if links_cutoff is not None else cutoff
    done: dict[str, int] = {}
    for name, table, column, key, before in (
        ("consent_events", events, events.c.created_at, events.c.id, cutoff),
        ("unsubscribe_uses", uses, uses.c.used_at, uses.c.token_hash, links_before),
        ("audit_log", audit, audit.c.created_at, audit.c.id, cutoff),
    ):
        ids = [r[0] for r in await conn.execute(select(key).where(column < before).limit(limit))]
        if ids:
            await conn.execute(delete(table).where(key.in_(ids)))
        done[name] = len(ids)
    return done
