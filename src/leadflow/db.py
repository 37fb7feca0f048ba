"""Engine and session set-up for SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import structlog
from sqlalchemy import Connection, Dialect, Executable, Result, ScalarResult, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, StaticPool

from leadflow.config import Settings

log = structlog.get_logger("leadflow.db")


def apply_sqlite_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """The pragmas of every SQLite connection Leadflow opens (the engine's, the capture writer's)."""
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; synchronous=FULL makes every commit durable.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Deleted and overwritten content is zeroed, not just unlinked: an erased person's bytes do not
    # linger in free pages or cell gaps (see scrub_after_erase for the WAL).
    cursor.execute("PRAGMA secure_delete=ON")
    # SQLite's own checkpoint runs inside the commit that takes the WAL past this many pages, on the
    # connection that commits. A served process checkpoints from its own thread instead (Checkpointer,
    # every second), so this is only the bound for a process without one (a CLI command, a worker alone);
    # the capture batch writer sets its own, smaller one (WRITER_AUTOCHECKPOINT_PAGES).
    cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    cursor.close()


AUTOCHECKPOINT_PAGES = 10_000  # 40 MB of WAL with 4 KiB pages (SQLite's default: 1 000)
# The capture batch writer's connection (its thread's or its process's) checkpoints sooner: under a
# stream of captures the checkpointer thread never finds the WAL idle enough to restart it, so the
# writer's own checkpoint, inside the commit that crosses the bound, is what copies the WAL back and
# lets the next batch start it over. At 10 000 pages that was a 35-50 ms commit every ~2 000 leads
# (every in-flight request waited for it, which set capture's p99 at 256 connections); at 2 500 pages
# a smaller one four times as often (commit p99 20-24 ms, capture p99 130-149 ms against 160-186 ms).
WRITER_AUTOCHECKPOINT_PAGES = 2_500


class Checkpointer:
    """SQLite: WAL checkpoints off the request path, in a thread of the served process.

    SQLite's automatic checkpoint copies the WAL into the database file and fsyncs it inside the commit
    that crosses its threshold, on whichever connection commits: the engine's one pooled connection
    (every request that writes, e.g. a page view's audit entry, then waits behind it for tens to
    hundreds of milliseconds) or the capture writer (every lead of its batch waits). This thread runs
    ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection every ``interval`` seconds instead: a
    passive checkpoint waits for no reader or writer, and copies what no reader still needs. The next
    writer restarts the WAL from its start once a checkpoint has copied all of it. Connections keep an
    automatic checkpoint at :data:`AUTOCHECKPOINT_PAGES` as a bound should this thread fall behind.
    """

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leadflow-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
        except sqlite3.Error as exc:
            log.warning("sqlite_checkpointer_failed", exc_type=type(exc).__name__)
            return
        try:
            db.execute("PRAGMA busy_timeout=1000")
            while not self._stop.wait(self._interval):
                self.checkpoint(db)
        finally:
            db.close()

    @staticmethod
    def checkpoint(db: sqlite3.Connection) -> tuple[int, int, int] | None:
        """One passive checkpoint: (busy, WAL pages, pages copied), or None when it failed."""
        try:
            row = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # e.g. the file is being replaced (restore): try again next time
            log.warning("sqlite_checkpoint_failed", exc_type=type(exc).__name__)
            return None
        return (int(row[0]), int(row[1]), int(row[2])) if row is not None else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


def checkpointer(settings: Settings) -> Checkpointer | None:
    path = settings.sqlite_path()
    return Checkpointer(path) if path is not None and path.exists() else None


class SqlitePool(AsyncAdaptedQueuePool):
    """The SQLite file engine's pool (one connection) that counts who is waiting for it.

    The capture writer holds the connection for a lease of several batches; it ends the lease early
    only when :attr:`waiting` says another user of the engine (the in-process worker, a page's write)
    is queued for the connection, and otherwise keeps writing without a trip through the event loop.
    """

    waiting = 0  # checkouts queued for the connection now (read from the capture writer's thread)
    # SQLAlchemy names a pool's logger after its class: keep it under "sqlalchemy" (quiet), not ours.
    _sqla_logger_namespace = "sqlalchemy.pool.impl.SqlitePool"

    def _do_get(self) -> ConnectionPoolEntry:
        self.waiting += 1
        try:
            return super()._do_get()
        finally:
            self.waiting -= 1


def pool_waiting(engine: AsyncEngine) -> bool:
    """Whether someone is queued for ``engine``'s connections (always true when the pool cannot say)."""
    pool = engine.sync_engine.pool
    return not isinstance(pool, SqlitePool) or pool.waiting > 0


def create_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    url = settings.database_url
    options: dict[str, Any] = {"hide_parameters": True, "pool_pre_ping": not settings.is_sqlite}
    if settings.is_sqlite:
        path = settings.sqlite_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # One connection: SQLite has one writer at a time, and writers racing for its lock sleep in
        # its busy handler (tens of ms each). Queuing for the connection in asyncio costs nothing.
        options.update(pool_size=1, max_overflow=0, pool_timeout=60)
        if path is not None:
            options["poolclass"] = SqlitePool
    else:
        # Each process holds at most DB_POOL_SIZE + DB_MAX_OVERFLOW connections (default 20): two API
        # processes and two workers stay well inside PostgreSQL's default max_connections of 100.
        options.update(
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_seconds,
            pool_recycle=1800,
        )
        if url.startswith("mysql"):
            # READ COMMITTED (PostgreSQL's default) rather than REPEATABLE READ: fewer gap locks between
            # captures and the worker, and reads see other transactions' commits.
            options.update(isolation_level="READ COMMITTED")
    if not settings.is_sqlite:
        # A database that does not answer fails a new connection after this long, not the driver's
        # default (asyncpg: 60 s), so capture can spool instead of hanging.
        if url.startswith("postgresql"):
            # ... and a statement waiting on a database that went silent (a partition dropping packets,
            # no reset) fails after DB_COMMAND_TIMEOUT_SECONDS instead of TCP's many minutes.
            options["connect_args"] = {
                "timeout": settings.db_connect_timeout_seconds,
                "command_timeout": settings.db_command_timeout_seconds,
            }
        else:
            options["connect_args"] = {"connect_timeout": settings.db_connect_timeout_seconds}
    options.update(kwargs)
    engine = create_async_engine(url, **options)
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", apply_sqlite_pragmas)
    return engine


# Tables that hold a person's data: vacuumed (PostgreSQL) or rebuilt (MySQL) by the retention job.
PERSONAL_TABLES = ("leads", "lead_activities", "jobs", "job_attempts")


async def scrub_after_erase(engine: AsyncEngine, attempts: int = 50) -> bool:
    """SQLite: after personal data was deleted or overwritten (and committed), checkpoint the WAL into
    the database file and truncate it.

    ``secure_delete`` zeroes the deleted content in the pages it writes, but in WAL mode those pages are
    appended to the ``-wal`` file, and the file still holds the frames of earlier transactions (the
    lead as it was inserted) until a checkpoint resets it; the main file holds the old page until the
    checkpoint copies the new one over it. ``wal_checkpoint(TRUNCATE)`` does both. It needs a moment
    without readers in other processes: retried ``attempts`` times, 0.1 s apart, then logged as
    ``sqlite_checkpoint_busy`` (the next erase or automatic checkpoint finishes the job). True when done.
    Other databases: nothing here (the retention job vacuums them: :func:`reclaim_space`).
    """
    if engine.dialect.name != "sqlite":
        return True
    for _ in range(attempts):
        async with engine.connect() as conn:
            row = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).first()
        if row is not None and row[0] == 0:
            return True
        await asyncio.sleep(0.1)
    log.warning("sqlite_checkpoint_busy")
    return False


async def reclaim_space(engine: AsyncEngine) -> str:
    """After the retention job: make the space of deleted/overwritten personal data reusable.

    PostgreSQL: ``VACUUM (ANALYZE)`` of the personal tables removes dead row versions and their index
    entries (their bytes are overwritten as the space is reused; only ``VACUUM FULL`` rewrites the files
    at once, under an exclusive lock: run it yourself if you need that). MySQL/MariaDB: ``OPTIMIZE
    TABLE`` rebuilds them (InnoDB: a copy of the table into a new tablespace, concurrent writes
    allowed). SQLite: a WAL checkpoint (:func:`scrub_after_erase`; secure_delete already zeroed the
    content). Returns what was done, for the job record.
    """
    name = engine.dialect.name
    tables = ", ".join(PERSONAL_TABLES)
    if name == "postgresql":
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql(f"VACUUM (ANALYZE) {tables}")
        return "vacuum"
    if name in ("mysql", "mariadb"):
        async with engine.connect() as conn:
            await conn.exec_driver_sql(f"OPTIMIZE TABLE {tables}")
            await conn.commit()
        return "optimize"
    return "checkpoint" if await scrub_after_erase(engine) else "checkpoint busy"


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside one transaction, committed on success (the boundary commits)."""
    async with engine.begin() as conn:
        yield conn


class PointReader:
    """Point look-ups on SQLite without the async adapter's thread hand-offs.

    aiosqlite runs every call on a helper thread (several hand-offs per query, ~0.5 ms of CPU), while a
    primary-key or unique-index read takes ~10 µs in SQLite itself; in WAL mode a reader never waits
    for the writer. So the hottest reads (lead status, the campaign of a capture, a page's session and
    the lead page's rows) run synchronously on one read-only connection: :meth:`one` for hand-written
    SQL, :meth:`connect` for the repositories' SQLAlchemy statements. They also stay off the engine's
    single pooled connection, so a page's reads never queue behind another request's write and its
    commit. Only for short indexed look-ups: scans stay on the async engine (they would block the
    event loop).
    """

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._conn.execute("PRAGMA query_only=ON")
        # The same connection behind a synchronous engine (the pysqlite dialect: the same types and
        # result processing as the async engine's aiosqlite one). Statements run to completion on
        # the event loop's thread, so requests interleave only between statements.
        self._engine = sa_create_engine(
            "sqlite://", creator=lambda: self._conn, poolclass=StaticPool, hide_parameters=True
        )

    def one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._conn.execute(sql, params).fetchone()
        return row

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A read connection for repository functions (which take an ``AsyncConnection``)."""
        with self._engine.connect() as conn:
            yield cast(AsyncConnection, InlineReads(conn))

    def close(self) -> None:
        self._engine.dispose()
        self._conn.close()


class InlineReads:
    """What repository reads use of an ``AsyncConnection`` (``execute``, ``scalar``, ``scalars``,
    ``dialect``), answered synchronously by a sync SQLAlchemy connection. Results are fetched in full
    before they are returned, so no statement stays open on the shared connection across an ``await``.
    A write through it fails (the connection is read-only and ``query_only``)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def dialect(self) -> Dialect:
        return self._conn.dialect

    async def execute(self, statement: Executable, parameters: Any = None) -> Result[Any]:
        return self._conn.execute(statement, parameters, execution_options=_PREBUFFER)

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        return self._conn.execute(statement, parameters, execution_options=_PREBUFFER).scalar()

    async def scalars(self, statement: Executable, parameters: Any = None) -> ScalarResult[Any]:
        return self._conn.execute(statement, parameters, execution_options=_PREBUFFER).scalars()


# Every row fetched before ``execute`` returns (what the async engine's results are), so the cursor is
# done with before the next ``await``.
_PREBUFFER = {"prebuffer_rows": True}


def point_reader(settings: Settings) -> PointReader | None:
    path = settings.sqlite_path()
    return PointReader(path) if path is not None and path.exists() else None


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


IN_CHUNK = 500  # parameters per IN (...) list, far below SQLite's variable limit


# -- Is the database reachable? (capture spool, 503 answers) ---------------------------------------

# MySQL client errors for a server that cannot be reached or went away (CR_CONNECTION_ERROR,
# CR_CONN_HOST_ERROR, CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED).
_MYSQL_UNREACHABLE = frozenset({2002, 2003, 2006, 2013, 2055})
_ASYNCPG_UNREACHABLE = frozenset(
    {
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "ConnectionFailureError",
        "TooManyConnectionsError",
    }
)


def database_unreachable(error: BaseException) -> bool:
    """True when ``error`` (or its cause) means the database server cannot be reached right now.

    Refused or reset connections and timeouts, a connection SQLAlchemy invalidated, MySQL's
    "can't connect" / "server has gone away", asyncpg's connection errors, an exhausted pool. Not:
    constraint violations, syntax errors, deadlocks (the database answered).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError | TimeoutError | sa_exc.TimeoutError):
            return True
        if type(current).__name__ in _ASYNCPG_UNREACHABLE:
            return True
        if isinstance(current, sa_exc.DBAPIError):
            if current.connection_invalidated:
                return True
            args = getattr(current.orig, "args", ())
            if args and args[0] in _MYSQL_UNREACHABLE:
                return True
            if current.orig is not None and type(current.orig).__name__ in _ASYNCPG_UNREACHABLE:
                return True
        current = current.__cause__ or current.__context__
    return False
