"""Where captured leads are stored: one protocol, one implementation per backend family.

:class:`CaptureStore` is what the capture service needs from a database: write one planned batch in
one transaction (:meth:`~CaptureStore.write`), write batch after batch while leads keep coming
(:meth:`~CaptureStore.stream`), find already stored lead ids (spool replay), prune old claims.

* :class:`CoreStore` — SQLAlchemy Core on the async engine, for PostgreSQL and MySQL/MariaDB (and
  in-memory SQLite). Each batch first locks its capture claims (``capture_claims`` rows, upserted in
  sorted order), which serialises captures of the same person or idempotency key across processes.
* :class:`SqliteStore` — a file SQLite database: batches are written by one writer thread on its own
  ``sqlite3`` connection (the same pragmas as the engine's: WAL, ``synchronous=FULL``, foreign keys),
  in ``BEGIN IMMEDIATE`` ... ``COMMIT``, which already serialises every writer of the file. While it
  writes, the writer holds the engine's single pooled connection, so no other writer of this process
  waits in SQLite's busy handler. Served, the event loop hands the batches to the writer process
  (:mod:`.writer_process`: the same :class:`SqliteBatchWriter` with a GIL of its own); the thread
  writes them only while that process is starting or gone. All of Leadflow's raw SQL for SQLite is in this
  file, the point reads of the capture path included (:func:`capture_campaign`, :func:`lead_status`).

The rules (what to write) are :mod:`leadflow.leads.capture.policy`'s; a store only reads what the plan
needs (:class:`~leadflow.leads.capture.policy.Stored`) and writes the plan's rows.
"""

from __future__ import annotations

import asyncio
import json
import operator
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy import JSON, LargeBinary, Table, delete, insert, select
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialects
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from leadflow.campaigns.service import CaptureCampaign
from leadflow.db import (
    IN_CHUNK,
    WRITER_AUTOCHECKPOINT_PAGES,
    PointReader,
    apply_sqlite_pragmas,
    chunks,
    pool_waiting,
)
from leadflow.kit.models import UTCDateTime
from leadflow.kit.process import DEFAULT_GC, GcTuning
from leadflow.leads import repository as repo
from leadflow.leads.capture.policy import (
    CaptureOutcome,
    EarlierLead,
    KeyedLead,
    Plan,
    PreparedLead,
    Rules,
    Stored,
    claim_keys,
    follow_up_rows,
)
from leadflow.leads.repository import StatusRow, leads
from leadflow.privacy.repository import previously_erased
from leadflow.scoring import rules

claims = repo.claims
jobs = repo.jobs
activities = repo.activities


class Planner(Protocol):
    """Plans a batch (policy.plan_batch with the settings bound): ``breakdown`` is the store's form."""

    def __call__(
        self,
        items: Sequence[PreparedLead],
        stored: Stored,
        now: datetime,
        breakdown: Callable[[rules.Score], Any],
    ) -> Plan: ...


@dataclass(slots=True)
class Batch:
    """Leads taken from the service's queue together; ``waiters`` is the service's, opaque here."""

    items: list[PreparedLead]
    waiters: list[Any]


@dataclass(frozen=True, slots=True)
class Written:
    outcomes: list[CaptureOutcome]
    leads: int  # how many leads were inserted


class Take(Protocol):
    def __call__(self, share: int = 1) -> Batch | None:
        """The next batch: what is queued, or its ``1/share`` part (rounded up), at most the batch cap;
        None when nothing is queued."""


Deliver = Callable[[Batch, Written], None]  # called on the event loop


class CaptureStore(Protocol):
    async def write(self, items: list[PreparedLead], planner: Planner) -> Written:
        """One batch in one transaction; raises (and nothing is stored) when it fails."""

    async def stream(self, take: Take, planner: Planner, deliver: Deliver) -> list[tuple[Batch, Exception]]:
        """Write what ``take`` gives, batch by batch, each in its transaction, ``deliver``-ing each;
        return the batches that failed (nothing of them is stored), for the service to retry."""

    def wake(self, *, closing: bool = False) -> None:
        """A lead was queued (a store waiting for more may go on at once); ``closing``: no more will
        come (stop waiting)."""

    async def stored_public_ids(self, public_ids: Sequence[str]) -> set[str]: ...

    async def prune_claims(self, before: datetime) -> None: ...

    async def start(self) -> None:
        """Get ready for the first batch (the writer process starts; nothing waits for it)."""

    async def close(self) -> None: ...


def make_store(
    engine: AsyncEngine,
    *,
    direct_sqlite: bool = True,
    lease_seconds: float = 0.1,
    linger_seconds: float = 0.25,
    process_rules: Rules | None = None,
    process_gc: GcTuning = DEFAULT_GC,
) -> CaptureStore:
    """The store for ``engine``: :class:`SqliteStore` for a file SQLite database, else :class:`CoreStore`
    (``direct_sqlite=False`` forces the Core store on SQLite too, e.g. to compare the two in tests).

    ``process_rules``: a file SQLite store writes its streamed batches in the writer process
    (:mod:`.writer_process`), planned with these rules (the capture writer's own); ``process_gc`` is
    its garbage-collector tuning (``GC_FREEZE``, ``GC_YOUNG_THRESHOLD``).
    """
    path = engine.url.database
    in_memory = not path or path == ":memory:" or path.startswith("file:")
    if direct_sqlite and engine.dialect.name == "sqlite" and path and not in_memory:
        remote: RemoteWriter | None = None
        if process_rules is not None:
            from leadflow.leads.capture.writer_process import WriterProcess

            remote = WriterProcess(path, process_rules, process_gc)
        return SqliteStore(
            engine, path, lease_seconds=lease_seconds, linger_seconds=linger_seconds, remote=remote
        )
    return CoreStore(engine)


# -- SQLAlchemy Core (PostgreSQL, MySQL/MariaDB) -------------------------------------------------------


async def lock_claims(conn: AsyncConnection, keys: Iterable[str], now: datetime) -> None:
    """Upsert the capture claims ``keys`` (in sorted order): row locks held until this transaction ends.

    A concurrent transaction that claims one of the same keys waits here until this one commits or
    rolls back, then sees its leads (READ COMMITTED: every statement reads the latest commits).
    Sorted order means two batches sharing several keys cannot deadlock on each other.
    """
    rows = [{"claim_key": key, "touched_at": now} for key in sorted(set(keys))]
    if not rows:
        return
    name = conn.dialect.name
    if name == "postgresql":
        pg = postgresql.insert(claims).values(rows)
        await conn.execute(pg.on_conflict_do_update(index_elements=["claim_key"], set_={"touched_at": now}))
    elif name == "mysql":
        my = mysql.insert(claims).values(rows)
        await conn.execute(my.on_duplicate_key_update(touched_at=my.inserted.touched_at))
    else:
        lite = sqlite_dialects.insert(claims).values(rows)
        await conn.execute(lite.on_conflict_do_update(index_elements=["claim_key"], set_={"touched_at": now}))


async def prune_claims(conn: AsyncConnection, before: datetime) -> int:
    """Drop claims not touched since ``before`` (older than the de-duplication window)."""
    result = await conn.execute(delete(claims).where(claims.c.touched_at < before))
    return int(result.rowcount or 0)


async def read_stored(conn: AsyncConnection, items: Sequence[PreparedLead]) -> Stored:
    """What the plan needs to know about the batch's people, visitors and keys."""
    hashes = sorted({i.email_hash for i in items})
    query = (
        select(leads.c.id, leads.c.public_id, leads.c.campaign_id, leads.c.email_hash, leads.c.created_at)
        .where(leads.c.email_hash.in_(hashes))
        .order_by(leads.c.created_at.desc(), leads.c.id.desc())
    )
    earlier = [EarlierLead(*row) for row in await conn.execute(query)]
    visitor_ids = sorted({i.values["visitor_id"] for i in items if i.values["visitor_id"]})
    visitors: set[str] = set()
    if visitor_ids:
        query = select(leads.c.visitor_id).where(leads.c.visitor_id.in_(visitor_ids)).distinct()
        visitors = {row[0] for row in await conn.execute(query)}
    keys = sorted({i.idempotency_key for i in items if i.idempotency_key})
    keyed: list[KeyedLead] = []
    if keys:
        query = select(*(leads.c[name] for name in KeyedLead._fields)).where(
            leads.c.idempotency_key.in_(keys)
        )
        keyed = [KeyedLead._make(row) for row in await conn.execute(query)]
    return Stored(earlier, visitors, keyed)


async def insert_leads(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert many leads in one executemany; returns their ids in the order given.

    No RETURNING: with it SQLAlchemy runs one INSERT per row on SQLite to keep the order (a batch of
    100 took ~80 ms); a plain executemany plus one indexed look-up by public id is ~10x cheaper.
    """
    await conn.execute(insert(leads), rows)
    ids = {
        public_id: int(pk)
        for pk, public_id in await conn.execute(
            select(leads.c.id, leads.c.public_id).where(leads.c.public_id.in_([r["public_id"] for r in rows]))
        )
    }
    return [ids[r["public_id"]] for r in rows]


async def insert_jobs(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Capture's outbox: the ``lead.process`` jobs of the batch's new leads (policy.process_job_row)."""
    if rows:
        await conn.execute(insert(jobs), rows)


class CoreStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, items: list[PreparedLead], planner: Planner) -> Written:
        from leadflow.kit.clock import utcnow

        now = utcnow()
        async with self._engine.begin() as conn:
            # First statement: lock this batch's people and idempotency keys against other processes.
            await lock_claims(conn, claim_keys(items), now)
            plan = planner(items, await read_stored(conn, items), now, rules.Score.breakdown)
            erased = await previously_erased(conn, sorted({r["email_hash"] for r in plan.lead_rows}))
            ids = await insert_leads(conn, plan.lead_rows) if plan.lead_rows else []
            activity_rows, job_rows = follow_up_rows(plan, ids, erased, now)
            await repo.insert_activities(conn, activity_rows)
            await insert_jobs(conn, job_rows)
        return Written(plan.answers(), len(ids))

    async def stream(self, take: Take, planner: Planner, deliver: Deliver) -> list[tuple[Batch, Exception]]:
        batch = take()
        if batch is None:
            return []
        try:
            written = await self.write(batch.items, planner)
        except Exception as exc:
            return [(batch, exc)]
        deliver(batch, written)
        return []

    def wake(self, *, closing: bool = False) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stored_public_ids(self, public_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        async with self._engine.connect() as conn:
            for part in chunks(public_ids, IN_CHUNK):
                query = select(leads.c.public_id).where(leads.c.public_id.in_(list(part)))
                found.update((await conn.execute(query)).scalars())
        return found

    async def prune_claims(self, before: datetime) -> None:
        async with self._engine.begin() as conn:
            await prune_claims(conn, before)

    async def close(self) -> None:
        pass


# -- SQLite: raw SQL on a sqlite3 connection ------------------------------------------------------------


def sqlite_utc(value: datetime | None) -> str | None:
    """What :class:`UTCDateTime` and SQLAlchemy's SQLite DATETIME store: naive UTC, microseconds."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class JsonText(str):
    """A JSON column's value already serialised by the column's own bind processor."""


class SqliteInserter:
    """Multi-row INSERTs into one table through a raw ``sqlite3`` connection.

    Values are converted exactly as SQLAlchemy would bind them: its own bind processors for the
    engine's dialect, with faster equivalents where the result is the same (:class:`UTCDateTime`,
    memoised per call since a batch repeats its timestamp; ``bytes`` for binary columns, which
    ``sqlite3`` stores as the same BLOB; :class:`JsonText` made by :meth:`json_text`), so rows
    written here read back the same through SQLAlchemy. One statement per chunk of rows rather than
    an executemany: ``sqlite3`` releases the GIL around every step, and each re-acquisition can wait
    for the busy event loop, so fewer steps keep a batch short.
    """

    def __init__(self, table: Table, dialect: Dialect) -> None:
        self.table = table
        self._processors: dict[str, Callable[[Any], Any] | None] = {}
        self._kinds: dict[str, str] = {}
        for column in table.columns:
            processor = column.type.dialect_impl(dialect).bind_processor(dialect)
            self._processors[column.name] = processor
            if isinstance(column.type, UTCDateTime):
                self._kinds[column.name] = "utc"
            elif isinstance(column.type, LargeBinary):
                self._kinds[column.name] = "blob"
            elif isinstance(column.type, JSON):
                self._kinds[column.name] = "json"
            else:
                self._kinds[column.name] = "plain" if processor is None else "processed"
        self._sql: dict[tuple[tuple[str, ...], int], str] = {}

    def json_text(self, column: str, value: Any) -> JsonText:
        """``value`` serialised for a JSON column now (e.g. to cache a repeated value)."""
        processor = self._processors[column]
        assert processor is not None and self._kinds[column] == "json"
        return JsonText(processor(value))

    def _converter(self, column: str, utc_memo: dict[datetime, str | None]) -> Callable[[Any], Any] | None:
        kind = self._kinds[column]
        processor = self._processors[column]
        if kind == "plain":
            return None
        if kind == "utc":

            def utc(value: datetime | None) -> str | None:
                if value is None:
                    return None
                text = utc_memo.get(value)
                if text is None:
                    text = utc_memo[value] = sqlite_utc(value)
                return text

            return utc
        if kind == "blob":
            return lambda value: value if value is None or type(value) is bytes else processor(value)  # type: ignore[misc]
        if kind == "json":
            return lambda value: str(value) if type(value) is JsonText else processor(value)  # type: ignore[misc]
        return processor

    def _statement(self, columns: tuple[str, ...], count: int) -> str:
        sql = self._sql.get((columns, count))
        if sql is None:
            # Names are the table's own columns (insert() looked each one up in _kinds).
            marks = "(" + ",".join("?" * len(columns)) + ")"
            names = ", ".join(f'"{name}"' for name in columns)
            into = f'INSERT INTO "{self.table.name}" ({names}) VALUES '  # noqa: S608
            sql = into + ",".join([marks] * count)
            if len(self._sql) < 64:
                self._sql[(columns, count)] = sql
        return sql

    def insert(self, db: sqlite3.Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = tuple(rows[0])
        utc_memo: dict[datetime, str | None] = {}
        converters = [(i, f) for i, name in enumerate(columns) if (f := self._converter(name, utc_memo))]
        values_of = operator.itemgetter(*columns)
        width = len(columns)
        per_statement = max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
        for part in chunks(rows, per_statement):
            params: list[Any] = []
            for row in part:
                if len(row) != width:
                    raise ValueError(f"rows for {self.table.name} must all have the same columns")
                values = list(values_of(row)) if width > 1 else [values_of(row)]
                for i, convert in converters:
                    values[i] = convert(values[i])
                params += values
            db.execute(self._statement(columns, len(part)), params)


def _in_lists(db: sqlite3.Connection, sql: str, values: Iterable[str]) -> list[Any]:
    """Run ``sql`` (with one ``{marks}`` IN list) over the distinct values, in chunks."""
    keys = sorted(set(values))
    rows: list[Any] = []
    for part in chunks(keys, IN_CHUNK):
        rows.extend(db.execute(sql.format(marks=",".join("?" * len(part))), part).fetchall())
    return rows


_EARLIER = (
    "SELECT id, public_id, campaign_id, email_hash, created_at FROM leads WHERE email_hash IN ({marks})"
)
_VISITORS = "SELECT DISTINCT visitor_id FROM leads WHERE visitor_id IN ({marks})"
_KEYED = f"SELECT {', '.join(KeyedLead._fields)} FROM leads WHERE idempotency_key IN ({{marks}})"  # noqa: S608
_ERASED = "SELECT email_hash FROM privacy_tombstones WHERE email_hash IN ({marks})"


def read_stored_sqlite(db: sqlite3.Connection, items: Sequence[PreparedLead]) -> Stored:
    """:func:`read_stored` on a raw sqlite3 connection."""
    rows = _in_lists(db, _EARLIER, (i.email_hash for i in items))
    earlier = [EarlierLead(pk, public, camp, email, _sqlite_time(at)) for pk, public, camp, email, at in rows]
    earlier.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    visitor_ids = (i.values["visitor_id"] for i in items if i.values["visitor_id"])
    visitors = {row[0] for row in _in_lists(db, _VISITORS, visitor_ids)}
    keys = (i.idempotency_key for i in items if i.idempotency_key)
    keyed = [KeyedLead._make(row) for row in _in_lists(db, _KEYED, keys)]
    return Stored(earlier, visitors, keyed)


def previously_erased_sqlite(db: sqlite3.Connection, hashes: Iterable[str]) -> set[str]:
    """Which of these blind indexes belong to people erased before (privacy tombstones)."""
    return {row[0] for row in _in_lists(db, _ERASED, hashes)}


def next_lead_id_sqlite(db: sqlite3.Connection) -> int:
    """The id SQLite itself would give the next lead (the table has no AUTOINCREMENT): max + 1.

    Only meaningful inside a write transaction (BEGIN IMMEDIATE), which keeps other writers out.
    """
    row = db.execute("SELECT max(id) FROM leads").fetchone()
    return int(row[0] or 0) + 1


class SqliteBatchWriter:
    """Writes planned batches on its own ``sqlite3`` connection: the writer thread's, or the writer
    process's (:mod:`.writer_process`). One batch is one ``BEGIN IMMEDIATE`` ... ``COMMIT``."""

    def __init__(self, path: str, dialect: Dialect) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None  # opened in (and used only by) the writing thread
        self._leads_in = SqliteInserter(leads, dialect)
        self._activities_in = SqliteInserter(activities, dialect)
        self._jobs_in = SqliteInserter(jobs, dialect)
        self._breakdowns: dict[rules.Score, JsonText] = {}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
            apply_sqlite_pragmas(db)
            db.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")
            self._db = db
        return self._db

    def write(self, items: list[PreparedLead], planner: Planner) -> Written:
        """One batch in BEGIN IMMEDIATE ... COMMIT (durable: synchronous=FULL); the loop stays free,
        also while SQLite waits for fsync or for another process's write lock (busy_timeout)."""
        from leadflow.kit.clock import utcnow

        db = self._connection()
        now = utcnow()
        db.execute("BEGIN IMMEDIATE")
        try:
            plan = planner(items, read_stored_sqlite(db, items), now, self._breakdown_json)
            ids: list[int] = []
            erased: set[str] = set()
            if plan.lead_rows:
                erased = previously_erased_sqlite(db, (r["email_hash"] for r in plan.lead_rows))
                # SQLite gives an INTEGER PRIMARY KEY without AUTOINCREMENT max + 1; naming the ids
                # ourselves (nobody else can insert inside BEGIN IMMEDIATE) saves reading them back.
                first = next_lead_id_sqlite(db)
                ids = list(range(first, first + len(plan.lead_rows)))
                for row, lead_id in zip(plan.lead_rows, ids, strict=True):
                    row["id"] = lead_id
                self._leads_in.insert(db, plan.lead_rows)
            activity_rows, job_rows = follow_up_rows(plan, ids, erased, now)
            self._activities_in.insert(db, activity_rows)
            self._jobs_in.insert(db, job_rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return Written(plan.answers(), len(ids))

    def _breakdown_json(self, score: rules.Score) -> JsonText:
        """The stored score breakdown, serialised once per distinct score (most leads share a few)."""
        text = self._breakdowns.get(score)
        if text is None:
            if len(self._breakdowns) >= 4096:
                self._breakdowns.clear()
            text = self._breakdowns[score] = self._leads_in.json_text("score_breakdown", score.breakdown())
        return text


class RemoteWriterLost(Exception):
    """The remote writer ended with batches sent and not answered (their fate is unknown)."""


class RemoteWriter(Protocol):
    """Where :class:`SqliteStore` sends its streamed batches when it has one (the writer process).

    Used on the event loop. Batches are answered in the order sent; several may be in flight.
    """

    on_answer: Callable[[], None]  # called on the loop when an answer (or the writer's end) arrives

    @property
    def wants_loop(self) -> bool:
        """Whether the loop should look at it: it became ready, it ended, or a restart is due (flags
        only: read from the store's thread, which then ends its lease)."""

    def available(self) -> bool:
        """Whether it takes batches now (starting it when due)."""

    def send(self, items: list[PreparedLead]) -> asyncio.Future[Written]:
        """Hand over a batch; the future raises what writing it raised, or :class:`RemoteWriterLost`
        when the writer ended before answering. Raises :class:`RemoteWriterLost` when not available."""

    async def ready(self, wait_seconds: float) -> bool:
        """Whether it takes batches, waiting up to ``wait_seconds`` (starting it when due)."""

    async def close(self) -> None: ...


class SqliteStore:
    """Group commit on a file SQLite database (see the module docstring).

    :meth:`stream` checks out the engine's pooled connection for a *lease*: while leads keep arriving,
    batch after batch is committed without giving the connection back, so no other writer of this
    process waits in SQLite's busy handler meanwhile. A lease ends when no lead has arrived for
    ``linger_seconds``; after ``lease_seconds`` when another user of the pool (worker, API writes) is
    waiting for the connection (:func:`~leadflow.db.pool_waiting`), so that it gets its turn; and
    after :attr:`MAX_LEASE_SECONDS` in any case (the writer's housekeeping runs between leases).

    With a ``remote`` writer (the writer process, :mod:`.writer_process`) the lease runs on the event
    loop: each batch is taken from the queue and sent to the process as soon as one of the
    :attr:`PIPELINE` places is free (so the process finds the next batch waiting when it commits one),
    and answered when the process's answer arrives, with no thread in between. A thread woken by the
    loop waits for the GIL, and the loop, which gives the GIL up and takes it back around every
    system call it makes, starved it: at 256 connections the old writer thread took each batch only
    once the loop had read every request, so the loop and the process took turns instead of working
    side by side. Without a ready process (starting, or gone) the batches are written by one writer
    thread on its own ``sqlite3`` connection, as are single writes (a lead retried alone, spool replay).
    """

    MAX_LEASE_SECONDS = 2.0
    PIPELINE = 2
    LINGER_SLICE_SECONDS = 0.005

    def __init__(
        self,
        engine: AsyncEngine,
        path: str,
        *,
        lease_seconds: float = 0.1,
        linger_seconds: float = 0.25,
        remote: RemoteWriter | None = None,
    ) -> None:
        self._engine = engine
        self._lease_seconds = lease_seconds
        self._linger_seconds = linger_seconds
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="leadflow-capture")
        self._local = SqliteBatchWriter(path, engine.dialect)  # used only in the writer thread
        self._remote = remote
        self._wakeup = threading.Event()  # set by wake() while the writer thread lingers
        self._lingering = False
        self._kick = asyncio.Event()  # set by wake() and by answers while the loop's lease wants them
        self._want_leads = False  # the loop's lease has a free place in the pipeline
        self._closing = False
        self._core = CoreStore(engine)
        self.remote_batches = 0  # streamed batches the remote writer wrote
        if remote is not None:
            remote.on_answer = self._kick.set

    # -- on the event loop
    async def write(self, items: list[PreparedLead], planner: Planner) -> Written:
        async with self._engine.connect():  # the pool's one connection: no other writer of this process
            written: Written = await self._in_thread(self._local.write, items, planner)
        return written

    async def stream(self, take: Take, planner: Planner, deliver: Deliver) -> list[tuple[Batch, Exception]]:
        remote = self._remote
        if remote is not None and remote.available():
            return await self._stream_remote(remote, take, deliver)
        loop = asyncio.get_running_loop()
        async with self._engine.connect():
            failed: list[tuple[Batch, Exception]] = await self._in_thread(
                self._lease, take, planner, deliver, loop
            )
        return failed

    def wake(self, *, closing: bool = False) -> None:
        if closing:
            self._closing = True
            self._wakeup.set()
            self._kick.set()
        elif self._want_leads:
            self._kick.set()
        elif self._lingering:
            self._wakeup.set()

    async def stored_public_ids(self, public_ids: Sequence[str]) -> set[str]:
        return await self._core.stored_public_ids(public_ids)

    async def prune_claims(self, before: datetime) -> None:
        await self._core.prune_claims(before)

    async def start(self) -> None:
        if self._remote is not None:
            await self.remote_ready(wait_seconds=0)

    async def remote_ready(self, *, wait_seconds: float) -> bool:
        """Whether the remote writer takes batches, waiting up to ``wait_seconds`` for it."""
        return await self._remote.ready(wait_seconds) if self._remote is not None else False

    async def close(self) -> None:
        if self._remote is not None:
            await self._remote.close()
        await asyncio.wrap_future(self._thread.submit(self._local.close))
        self._thread.shutdown(wait=True)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        done = self._thread.submit(fn, *args)
        try:
            return await asyncio.wrap_future(done)
        except asyncio.CancelledError:
            # The pooled connection goes back only once the thread has finished with the database.
            futures.wait([done])
            raise

    async def _stream_remote(
        self, remote: RemoteWriter, take: Take, deliver: Deliver
    ) -> list[tuple[Batch, Exception]]:
        """One lease on the loop: batches to the remote writer, answers to ``deliver``, in order."""
        failed: list[tuple[Batch, Exception]] = []
        pending: deque[tuple[Batch, asyncio.Future[Written]]] = deque()
        async with self._engine.connect():
            started = time.monotonic()
            over = False
            try:
                while True:
                    while pending and pending[0][1].done():
                        batch, answer = pending.popleft()
                        try:
                            written = answer.result()
                        except Exception as exc:
                            failed.append((batch, exc))
                        else:
                            self.remote_batches += 1
                            deliver(batch, written)
                    over = over or self._lease_over(started, failed)
                    while not over and len(pending) < self.PIPELINE:
                        # What is queued is shared among the free places: one batch that takes every
                        # waiting request keeps them in step (the loop idles while the process writes,
                        # then the process idles while the loop answers and reads them all again).
                        share = self.PIPELINE - len(pending)
                        next_batch = take(share) or (None if pending else await self._linger_on_loop(take))
                        if next_batch is None:
                            break
                        try:
                            pending.append((next_batch, remote.send(next_batch.items)))
                        except Exception as exc:  # RemoteWriterLost: it ended since available()
                            failed.append((next_batch, exc))
                            over = True
                    if not pending:  # the lease is over, or no lead came while it lingered
                        return failed
                    self._want_leads = not over and len(pending) < self.PIPELINE
                    self._kick.clear()
                    await self._kick.wait()
            finally:
                self._want_leads = False

    async def _linger_on_loop(self, take: Take) -> Batch | None:
        """Wait (up to linger_seconds) for the next lead rather than end the lease at once; the wait
        ends when a lead comes, another user of the engine is queued for the connection (checked every
        :attr:`LINGER_SLICE_SECONDS`) or the writer is closing."""
        deadline = time.monotonic() + self._linger_seconds
        self._want_leads = True
        try:
            while True:
                batch = take()
                if batch is not None or self._closing or pool_waiting(self._engine):
                    return batch
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._kick.clear()
                try:
                    async with asyncio.timeout(min(left, self.LINGER_SLICE_SECONDS)):
                        await self._kick.wait()
                except TimeoutError:
                    pass
        finally:
            self._want_leads = False

    # -- in the writer thread (no remote writer ready)
    def _lease(
        self, take: Take, planner: Planner, deliver: Deliver, loop: asyncio.AbstractEventLoop
    ) -> list[tuple[Batch, Exception]]:
        """Commit batch after batch while leads wait, within one lease; failed batches are returned
        (the service retries them lead by lead)."""
        failed: list[tuple[Batch, Exception]] = []
        started = time.monotonic()
        while True:
            batch = take() or self._linger(take)
            if batch is None:
                return failed
            try:
                written = self._local.write(batch.items, planner)
            except Exception as exc:
                failed.append((batch, exc))
            else:
                loop.call_soon_threadsafe(deliver, batch, written)
            if self._lease_over(started, failed) or (self._remote is not None and self._remote.wants_loop):
                return failed  # the loop starts, takes back or gives up the remote writer

    def _lease_over(self, started: float, failed: list[tuple[Batch, Exception]]) -> bool:
        held = time.monotonic() - started
        if failed or held >= self.MAX_LEASE_SECONDS:
            return True
        return held >= self._lease_seconds and pool_waiting(self._engine)

    def _linger(self, take: Take) -> Batch | None:
        """Wait (up to linger_seconds) for the next lead rather than end the lease at once.

        Going back to the loop to end a lease and take a new one waits behind everything the loop has
        to do: under load, answering the batch just committed and reading the next requests. Waiting
        here instead lets the next batch start while the loop is still busy. The wait ends as soon as
        another user of the engine is queued for the connection (checked every
        :attr:`LINGER_SLICE_SECONDS`) or the writer is closing.
        """
        self._wakeup.clear()
        self._lingering = True
        try:
            deadline = time.monotonic() + self._linger_seconds
            while True:
                batch = take()  # queued in between: no wait (wake() saw _lingering still False)
                if batch is not None or self._closing or pool_waiting(self._engine):
                    return batch
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._wakeup.wait(min(left, self.LINGER_SLICE_SECONDS))
                self._wakeup.clear()
        finally:
            self._lingering = False


# -- Point reads on SQLite (the capture path's campaign, the status endpoint) ---------------------------

_CAMPAIGN = (
    "SELECT id, name, status, token_hash, allowed_origins, services, end_date FROM campaigns WHERE id = ?"
)
_STATUS = (
    "SELECT public_id, status, updated_at, assigned_to, follow_up_date, lead_grade FROM leads"
    " WHERE public_id = ?"
)


def _json_list(value: str | None) -> list[str]:
    return list(json.loads(value) or ()) if value else []


def capture_campaign(reader: PointReader, campaign_id: str) -> CaptureCampaign | None:
    """What the capture path needs of a campaign, by primary key on the read-only point reader."""
    found = reader.one(_CAMPAIGN, (campaign_id,))
    if found is None:
        return None
    pk, name, status, token_hash, origins, services, end_date = found
    return CaptureCampaign(
        id=pk,
        name=name,
        status=status,
        token_hash=token_hash,
        allowed_origins=frozenset(_json_list(origins)),
        services=tuple(_json_list(services)),
        end_date=date.fromisoformat(str(end_date)[:10]) if end_date else None,
    )


def lead_status(reader: PointReader, public_id: str) -> StatusRow | None:
    """:func:`leadflow.leads.repository.status_row` on the point reader."""
    row = reader.one(_STATUS, (public_id,))
    if row is None:
        return None
    public, status, updated, assigned, follow_up, grade = row
    follow = _sqlite_time(follow_up) if follow_up is not None else None
    return StatusRow(public, status, _sqlite_time(updated), assigned, follow, grade)
