"""Capture claims: the row locks that serialise captures of one person across processes (issue 8, item 1).

The locks are checked directly on two connections: a second transaction claiming the same key waits
for the first (and gives up at a short lock timeout here), one claiming another key does not wait.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from leadflow.kit.clock import utcnow
from leadflow.leads.capture import store
from tests.conftest import Harness


async def _lock_timeout(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SET LOCAL lock_timeout = '300ms'"))
    else:
        await conn.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))


@pytest.mark.parametrize("backend", ["postgres", "mysql"], indirect=True)
async def test_same_key_waits_other_keys_do_not(harness: Harness) -> None:
    engine = harness.engine
    now = utcnow()
    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await store.lock_claims(first, ["a" * 64, "b" * 64], now)
        await second.begin()
        await _lock_timeout(second)
        # Another person: no wait, although the first transaction is still open.
        await asyncio.wait_for(store.lock_claims(second, ["c" * 64], now), timeout=5)
        await second.commit()
        await second.begin()
        await _lock_timeout(second)
        with pytest.raises(DBAPIError):  # the same person: waits until the lock timeout
            await store.lock_claims(second, ["b" * 64], now)
        await second.rollback()
        await first.commit()
        await second.begin()
        await store.lock_claims(second, ["b" * 64], now)  # released by the commit
        await second.commit()
    assert await harness.scalar("SELECT count(*) FROM capture_claims") == 3


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_claims_are_upserted_and_pruned_after_the_window(harness: Harness) -> None:
    now = utcnow()
    old = now - timedelta(hours=30)
    async with harness.engine.begin() as conn:
        await store.lock_claims(conn, ["old" + "0" * 61, "kept" + "0" * 60], old)
    async with harness.engine.begin() as conn:
        await store.lock_claims(conn, ["kept" + "0" * 60, "new" + "0" * 61], now)  # touched again
    assert await harness.scalar("SELECT count(*) FROM capture_claims") == 3
    async with harness.engine.begin() as conn:
        assert await store.prune_claims(conn, now - timedelta(hours=25)) == 1
    rows = await harness.scalar("SELECT count(*) FROM capture_claims WHERE claim_key LIKE 'old%'")
    assert rows == 0
    assert await harness.scalar("SELECT count(*) FROM capture_claims") == 2
