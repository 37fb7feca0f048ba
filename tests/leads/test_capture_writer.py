"""The capture writer's two SQLite paths (writer thread on the raw connection, async engine) agree."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from leadflow.campaigns.service import CaptureCampaign
from leadflow.db import AUTOCHECKPOINT_PAGES, WRITER_AUTOCHECKPOINT_PAGES, SqlitePool, pool_waiting
from leadflow.leads import repository as repo
from leadflow.leads.capture import CaptureOutcome, CaptureWriter, PreparedLead, prepare
from leadflow.leads.capture.store import CoreStore, JsonText, SqliteInserter, SqliteStore, make_store
from leadflow.leads.schemas import CaptureRequest
from leadflow.security.crypto import FieldCipher
from tests.conftest import TEST_KEY, Harness, example_lead

CAMPAIGN = CaptureCampaign("nextcloud-installation-2025", "Nextcloud", "active", None, frozenset(), ())
CIPHER = FieldCipher([base64.b64decode(TEST_KEY)])


def _item(email: str, key: str | None = None, visitor: str | None = None) -> PreparedLead:
    body = example_lead(email=email)
    body["tracking"]["visitor_id"] = visitor
    request = CaptureRequest.model_validate(body, context={"phone_region": "US"})
    return prepare(request, CAMPAIGN, CIPHER, frozenset({"nextcloud installation"}), "203.0.113.1", key)


def _writer(engine: AsyncEngine, direct: bool, *, process: bool = False) -> CaptureWriter:
    return CaptureWriter(
        engine,
        dedup_window=timedelta(hours=24),
        qualifying_grades=("A", "B"),
        direct_sqlite=direct,
        writer_process=process,
    )


async def _started(writer: CaptureWriter) -> CaptureWriter:
    """A writer whose writer process is ready: its batches go there, not to the thread."""
    store = writer.store
    assert isinstance(store, SqliteStore)
    assert await store.remote_ready(wait_seconds=60), "the writer process did not start"
    return writer


# thread: the writer thread on its own sqlite3 connection; core: SQLAlchemy Core on the async engine;
# process: the writer process (leads/capture/writer_process.py).
MODES = ["thread", "core", "process"]


async def _writer_for(engine: AsyncEngine, mode: str) -> CaptureWriter:
    writer = _writer(engine, mode != "core", process=mode == "process")
    return await _started(writer) if mode == "process" else writer


async def _submit_all(writer: CaptureWriter, items: list[PreparedLead]) -> list[CaptureOutcome]:
    return list(await asyncio.gather(*(writer.submit(i) for i in items)))


@pytest.mark.parametrize("mode", MODES)
async def test_batch_outcomes_and_rows(harness: Harness, campaign: dict[str, Any], mode: str) -> None:
    engine = harness.engine
    writer = await _writer_for(engine, mode)
    await harness.execute(
        "INSERT INTO privacy_tombstones (email_hash, erased_at, reason) VALUES (:h, :at, 'request')",
        h=_item("erased@company.com").email_hash,
        at=datetime(2025, 1, 1),
    )
    first = await _submit_all(
        writer,
        [
            _item("a@company.com", key="k1", visitor="vis_1"),
            _item("a@company.com"),  # duplicate of the first, in the same batch
            _item("b@company.com", key="k1"),  # same key, other person: conflict
            _item("a@company.com", key="k1"),  # same key, same person: replay
            _item("c@company.com", visitor="vis_1"),  # returning visitor (seen in this batch)
            _item("erased@company.com"),
        ],
    )
    assert [o.kind for o in first] == ["created", "duplicate", "key_conflict", "replay", "created", "created"]
    assert first[1].public_id == first[3].public_id == first[0].public_id
    second = await _submit_all(writer, [_item("a@company.com", key="k1"), _item("a@company.com")])
    assert [o.kind for o in second] == ["replay", "duplicate"]
    assert second[0].public_id == first[0].public_id
    if mode == "process":
        # The first six were shared between the pipeline's two places (three each: the replay of
        # "a@" is then found in the database, not in its batch); the lingering lease took the next two.
        assert isinstance(writer.store, SqliteStore) and writer.store.remote_batches == 3
    await writer.close()
    assert writer.leads_written == 3

    async with engine.connect() as conn:
        leads = {r.public_id: r for r in (await conn.execute(select(repo.leads))).all()}
        kinds = sorted(
            (await conn.execute(text("SELECT activity_type FROM lead_activities"))).scalars().all()
        )
        jobs = (await conn.execute(select(repo.jobs))).all()
    assert kinds == sorted(["created"] * 3 + ["duplicate_submission"] * 2 + ["previously_erased"])
    assert {j.payload["public_id"] for j in jobs} == set(leads)
    returning = leads[first[4].public_id]
    assert returning.returning_visitor is True
    assert returning.score_breakdown["total"] == returning.lead_score
    assert CIPHER.decrypt(returning.email, "email") == "c@company.com"
    assert returning.created_at.tzinfo is not None


async def test_both_paths_store_the_same_values(harness: Harness, campaign: dict[str, Any]) -> None:
    """Column by column, as SQLite stores them (text, blob, integer): only ids and times may differ."""
    engine = harness.engine
    for mode in MODES:
        writer = await _writer_for(engine, mode)
        await _submit_all(
            writer, [_item(f"same-{mode}@company.com", key=f"key-{mode}", visitor=f"vis-{mode}")]
        )
        await writer.close()
    skip = {"id", "uuid", "public_id", "email", "email_hash", "first_name", "last_name", "phone"}
    skip |= {"company", "message", "ip_address", "user_agent", "visitor_id", "idempotency_key"}
    async with engine.connect() as conn:
        columns = [c.name for c in repo.leads.columns if c.name not in skip]
        typed = ", ".join(f'typeof("{c}"), "{c}"' for c in columns)
        rows = (await conn.execute(text(f"SELECT {typed} FROM leads ORDER BY id"))).all()
        times = (await conn.execute(text("SELECT created_at, consent_at FROM leads ORDER BY id"))).all()
        activities = (
            await conn.execute(
                text("SELECT typeof(metadata), metadata, typeof(created_at) FROM lead_activities")
            )
        ).all()
        jobs = (
            await conn.execute(
                text("SELECT kind, status, typeof(payload), typeof(run_at), lead_id FROM jobs")
            )
        ).all()
    moving = {"created_at", "updated_at", "consent_at"}
    stored = [{k: v for k, v in zip(columns, list(r)[1::2], strict=True) if k not in moving} for r in rows]
    assert len(rows) == len(MODES)
    for row, values in zip(rows[1:], stored[1:], strict=True):
        assert list(row)[0::2] == list(rows[0])[0::2]  # the same storage class in every column
        assert values == stored[0]
    for value in (v for pair in times for v in pair):  # SQLAlchemy's DATETIME text, with microseconds
        assert len(value) == 26 and value[10] == " "
    assert {a[0] for a in activities} == {"text"}
    assert len({a[1].replace("1", "2").replace("3", "2") for a in activities}) == 1  # only lead ids differ
    assert [j[:4] for j in jobs] == [("lead.process", "pending", "text", "text")] * len(MODES)


async def test_inserter_matches_sqlalchemy_insert(harness: Harness, campaign: dict[str, Any]) -> None:
    engine = harness.engine
    values: dict[str, Any] = {
        "kind": "lead.process",
        "payload": {"lead_id": 1, "text": 'é "quoted"'},
        "status": "pending",
        "attempts": 0,
        "max_attempts": 8,
        "run_at": datetime(2025, 10, 3, 10, 30, tzinfo=UTC),
        "locked_until": datetime(2025, 10, 3, 12, 30, 0, 5, tzinfo=UTC).astimezone(),
        "lead_id": None,
        "dedup_key": None,
        "created_at": datetime(2025, 10, 3, tzinfo=UTC),
        "updated_at": datetime(2025, 10, 3, tzinfo=UTC),
    }
    async with engine.begin() as conn:
        await conn.execute(insert(repo.jobs), [{**values, "dedup_key": "core"}])
    inserter = SqliteInserter(repo.jobs, engine.dialect)
    db = sqlite3.connect(str(engine.url.database), isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        inserter.insert(db, [{**values, "dedup_key": "raw"}])
        pretyped = {**values, "dedup_key": "pre", "payload": inserter.json_text("payload", values["payload"])}
        assert isinstance(pretyped["payload"], JsonText)
        inserter.insert(db, [pretyped])
        with pytest.raises(ValueError, match="naive"):
            inserter.insert(db, [{**values, "dedup_key": "naive", "run_at": datetime(2025, 1, 1)}])
        db.execute("COMMIT")
    finally:
        db.close()
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT dedup_key, payload, run_at, locked_until, typeof(lead_id) FROM jobs ORDER BY dedup_key"
                )
            )
        ).all()
    core = next(r for r in rows if r[0] == "core")
    assert [r[1:] for r in rows if r[0] != "core"] == [core[1:], core[1:]]


async def test_other_pool_users_get_the_connection_during_a_stream_of_captures(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    writer = CaptureWriter(
        harness.engine,
        dedup_window=timedelta(hours=24),
        qualifying_grades=("A",),
        lease_seconds=0.05,
        linger_seconds=0.2,
    )
    stop = asyncio.Event()

    async def stream() -> int:
        count = 0
        while not stop.is_set():
            await writer.submit(_item(f"stream{count}@company.com"))
            count += 1
        return count

    streaming = asyncio.create_task(stream())
    await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()
    assert await harness.scalar("SELECT count(*) FROM campaigns") == 1  # needs the pool's connection
    waited = asyncio.get_running_loop().time() - started
    stop.set()
    count = await streaming
    await writer.close()
    # A waiter ends the lease after lease_seconds (not only at the writer's MAX_LEASE_SECONDS).
    assert waited < SqliteStore.MAX_LEASE_SECONDS / 2
    assert count > 0 and writer.leads_written == count


async def test_a_lease_goes_on_while_nobody_else_waits_for_the_connection(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    """Under a stream of captures one lease covers many batches: the writer thread does not go back to
    the event loop every lease_seconds when no other user of the pool is queued."""
    writer = CaptureWriter(
        harness.engine,
        dedup_window=timedelta(hours=24),
        qualifying_grades=("A",),
        lease_seconds=0.02,
        linger_seconds=1.0,  # a slow machine pausing between leads does not end a lease
    )
    store = writer.store
    assert isinstance(store, SqliteStore)
    leases = 0
    stream = store.stream

    async def counted(*args: Any) -> Any:
        nonlocal leases
        leases += 1
        return await stream(*args)

    store.stream = counted  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()

    async def submitter(n: int) -> int:
        count = 0
        while not stop.is_set():
            await writer.submit(_item(f"lease{n}-{count}@company.com"))
            count += 1
        return count

    tasks = [asyncio.create_task(submitter(n)) for n in range(4)]
    await asyncio.sleep(0.4)  # 20 x lease_seconds
    stop.set()
    counts = await asyncio.gather(*tasks)
    await writer.close()
    assert writer.batches > 4 and writer.leads_written == sum(counts)
    assert leases <= 2, f"{leases} leases for {writer.batches} batches"


async def test_pool_waiting_sees_who_is_queued_for_the_connection(harness: Harness) -> None:
    engine = harness.engine
    assert isinstance(engine.sync_engine.pool, SqlitePool)
    assert not pool_waiting(engine)
    async with engine.connect():
        queued = asyncio.create_task(harness.scalar("SELECT 1"))
        while not pool_waiting(engine):
            await asyncio.sleep(0.005)
    assert await queued == 1
    assert not pool_waiting(engine)
    other = create_async_engine("sqlite+aiosqlite://")  # a pool that does not count: always "waiting"
    try:
        assert pool_waiting(other)
    finally:
        await other.dispose()


async def test_a_failing_batch_is_retried_lead_by_lead(harness: Harness, campaign: dict[str, Any]) -> None:
    writer = _writer(harness.engine, True)
    bad = _item("orphan@company.com")
    bad.campaign = CaptureCampaign("no-such-campaign", "x", "active", None, frozenset(), ())
    bad.values["campaign_id"] = "no-such-campaign"  # violates the campaigns foreign key
    good = [_item(f"good{i}@company.com") for i in range(3)]
    results = await asyncio.gather(
        *(writer.submit(i) for i in [good[0], bad, *good[1:]]), return_exceptions=True
    )
    await writer.close()
    assert [getattr(r, "kind", None) for r in results] == ["created", None, "created", "created"]
    assert getattr(results[1], "status", None) == 503
    assert await harness.scalar("SELECT count(*) FROM leads") == 3
    assert await harness.scalar("SELECT count(*) FROM jobs") == 3


async def test_the_store_follows_the_database(harness: Harness, campaign: dict[str, Any]) -> None:
    """A file SQLite database gets the writer-thread store; in-memory SQLite (and any other database,
    or ``direct_sqlite=False``) the SQLAlchemy Core store, which stores the same leads."""
    assert isinstance(make_store(harness.engine), SqliteStore)
    assert isinstance(make_store(harness.engine, direct_sqlite=False), CoreStore)
    memory = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        assert isinstance(make_store(memory), CoreStore)
    finally:
        await memory.dispose()
    writer = _writer(harness.engine, False)
    outcomes = await _submit_all(writer, [_item("fallback@company.com"), _item("fallback@company.com")])
    await writer.close()
    assert [o.kind for o in outcomes] == ["created", "duplicate"]
    assert isinstance(writer.store, CoreStore)
    assert await harness.scalar("SELECT count(*) FROM leads") == 1


async def test_the_batch_writer_restarts_its_wal_at_its_own_bound(
    harness: Harness, campaign: dict[str, Any]
) -> None:
    """Its commits checkpoint the WAL at WRITER_AUTOCHECKPOINT_PAGES (smaller, more frequent copies
    than the engine's AUTOCHECKPOINT_PAGES), so a stream of captures keeps the -wal file about that
    small without the served process's checkpointer thread."""
    path = harness.settings.sqlite_path()
    assert path is not None

    def checkpointed_pages() -> int:
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return int(db.execute("PRAGMA page_count").fetchone()[0])
        finally:
            db.close()

    before = checkpointed_pages()
    writer = _writer(harness.engine, True)
    for round_ in range(12):
        outcomes = await _submit_all(writer, [_item(f"w{round_}-{i}@company.com") for i in range(200)])
        assert {o.kind for o in outcomes} == {"created"}
    await writer.close()
    wal_pages = Path(f"{path}-wal").stat().st_size // (4096 + 24)  # a frame: a page and its header
    added = checkpointed_pages() - before
    # Without a restart the WAL would hold every page written (at least the pages added, ~3 000,
    # far below the engine's bound); it was started over, and never grew far past the writer's bound.
    assert WRITER_AUTOCHECKPOINT_PAGES < added < AUTOCHECKPOINT_PAGES
    assert WRITER_AUTOCHECKPOINT_PAGES <= wal_pages < min(added, WRITER_AUTOCHECKPOINT_PAGES + 600)
