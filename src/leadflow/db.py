"""Engine and session set-up for SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import JSON, LargeBinary, Table, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from leadflow.config import Settings
from leadflow.kit.models import UTCDateTime

log = structlog.get_logger("leadflow.db")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; synchronous=FULL makes every commit durable.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Deleted and overwritten content is zeroed, not just unlinked: an erased person's bytes do not
    # linger in free pages or cell gaps (see scrub_after_erase for the WAL).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


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
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
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
    for the writer. So the hottest reads (lead status) run synchronously on a read-only connection.
    Only for short indexed look-ups: scans stay on the async engine.
    """

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._conn.execute("PRAGMA query_only=ON")

    def one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._conn.execute(sql, params).fetchone()
        return row

    def close(self) -> None:
        self._conn.close()


def point_reader(settings: Settings) -> PointReader | None:
    path = settings.sqlite_path()
    return PointReader(path) if path is not None and path.exists() else None


# -- Direct SQLite writes (the capture group commit) -----------------------------------------------


def sqlite3_connection(driver_connection: Any) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection inside an aiosqlite connection (None for any other driver).

    Only for use while the pooled connection is checked out, so that nothing else runs on it.
    aiosqlite opens file databases with ``check_same_thread=False`` (SQLAlchemy's default for files).
    """
    try:
        raw = getattr(driver_connection, "_conn", None)  # aiosqlite keeps it there
    except ValueError:  # aiosqlite: "no active connection"
        return None
    return raw if isinstance(raw, sqlite3.Connection) else None


def sqlite_utc(value: datetime | None) -> str | None:
    """What :class:`UTCDateTime` and SQLAlchemy's SQLite DATETIME store: naive UTC, microseconds."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


IN_CHUNK = 500  # parameters per IN (...) list, far below SQLite's variable limit


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
        converters = [(name, self._converter(name, utc_memo)) for name in columns]
        per_statement = max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(columns))
        for part in chunks(rows, per_statement):
            params: list[Any] = []
            for row in part:
                if len(row) != len(columns):
                    raise ValueError(f"rows for {self.table.name} must all have the same columns")
                params.extend([row[name] if f is None else f(row[name]) for name, f in converters])
            db.execute(self._statement(columns, len(part)), params)


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
