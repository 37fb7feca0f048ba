"""Engine and session set-up for SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from leadflow.config import Settings


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; synchronous=FULL makes every commit durable.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
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
        options.update(pool_size=10, max_overflow=20, pool_recycle=1800)
        if url.startswith("mysql"):
            # READ COMMITTED (PostgreSQL's default) rather than REPEATABLE READ: fewer gap locks between
            # captures and the worker, and reads see other transactions' commits.
            options.update(isolation_level="READ COMMITTED")
    options.update(kwargs)
    engine = create_async_engine(url, **options)
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


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
