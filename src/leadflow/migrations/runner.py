"""Run Alembic programmatically (``leadflow migrate``, ``serve --migrate``, app start-up in tests)."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

log = structlog.get_logger("leadflow.migrate")

# The advisory lock every `leadflow migrate` takes (PostgreSQL: a bigint key; MySQL: a named lock).
PG_LOCK_KEY = 0x6C66_6D69_6772_6174  # "lfmigrat"
MYSQL_LOCK_NAME = "leadflow.migrate"

HERE = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _downgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    engine = create_async_engine(url, hide_parameters=True)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()


async def downgrade_async(url: str, revision: str) -> None:
    engine = create_async_engine(url, hide_parameters=True)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, revision)
    finally:
        await engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    asyncio.run(upgrade_async(url, revision))


def head_revisions() -> set[str]:
    """The revisions this version of the code expects the database to be at."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def current_revisions(connection: Connection) -> set[str]:
    """The revisions the database is at (empty: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    return set(MigrationContext.configure(connection).get_current_heads())


class MigrationError(RuntimeError):
    """A migration cannot run: unknown revision, lock not obtained in time."""


@dataclass(frozen=True)
class MigrationResult:
    before: str | None  # revision found in the database (None: empty database)
    after: str | None  # revision the database is at now (None: base)
    direction: Literal["upgrade", "downgrade", "none"]


def _resolve(script: ScriptDirectory, target: str) -> str | None:
    """The revision id ``target`` names ("head", "base", a full or partial id); None is base."""
    if target == "base":
        return None
    try:
        revision = script.get_revision(target)
    except CommandError as exc:  # alembic's ResolutionError is a CommandError
        raise MigrationError(f"unknown revision {target!r}: {exc}") from exc
    if revision is None:
        raise MigrationError(f"unknown revision {target!r}")
    return revision.revision


def _migrate_sync(connection: Connection, target: str) -> MigrationResult:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    script = ScriptDirectory.from_config(cfg)
    wanted = _resolve(script, target)
    current = MigrationContext.configure(connection).get_current_revision()
    if current == wanted:
        return MigrationResult(current, current, "none")
    ancestors = (
        {r.revision for r in script.iterate_revisions(current, "base")} if current is not None else set()
    )
    if wanted is None or wanted in ancestors:
        command.downgrade(cfg, wanted or "base")
        return MigrationResult(current, wanted, "downgrade")
    command.upgrade(cfg, wanted)
    return MigrationResult(current, wanted, "upgrade")


@asynccontextmanager
async def migration_lock(conn: AsyncConnection, url: str, wait_seconds: float) -> AsyncIterator[None]:
    """Hold the database-wide migration lock on ``conn`` (one migration at a time, any host).

    PostgreSQL: a session-level advisory lock (``pg_advisory_lock``) bounded by ``lock_timeout``;
    MySQL/MariaDB: ``GET_LOCK``; SQLite: an exclusive ``flock`` on ``<database>.migrate.lock``
    (SQLite is single-host). Both server locks are released when the session ends, so a migrator
    that dies cannot leave the lock behind.
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        try:
            await conn.execute(text(f"SET lock_timeout = {max(1, int(wait_seconds * 1000))}"))
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
        except DBAPIError as exc:
            raise MigrationError(f"another migration held the lock for more than {wait_seconds:g} s") from exc
        await conn.execute(text("SET lock_timeout = 0"))
        await conn.commit()
        try:
            yield
        finally:
            await conn.rollback()
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
            await conn.commit()
    elif dialect in ("mysql", "mariadb"):
        got = (
            await conn.execute(
                text("SELECT GET_LOCK(:name, :timeout)"),
                {"name": MYSQL_LOCK_NAME, "timeout": int(wait_seconds)},
            )
        ).scalar()
        await conn.commit()
        if got != 1:
            raise MigrationError(f"another migration held the lock for more than {wait_seconds:g} s")
        try:
            yield
        finally:
            await conn.rollback()
            await conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": MYSQL_LOCK_NAME})
            await conn.commit()
    else:
        database = make_url(url).database
        if not database or database.startswith(":memory:") or database.startswith("file:"):
            yield
            return
        path = Path(f"{database}.migrate.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = asyncio.get_running_loop().time() + wait_seconds
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError as exc:
                    if asyncio.get_running_loop().time() >= deadline:
                        raise MigrationError(
                            f"another migration held {path} for more than {wait_seconds:g} s"
                        ) from exc
                    await asyncio.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


async def migrate_async(url: str, target: str = "head", *, lock_timeout: float = 600.0) -> MigrationResult:
    """Bring the schema to ``target`` (upgrade or downgrade), under the database-wide migration lock.

    Every process that runs this at the same time (two API replicas started with ``--migrate``)
    waits for the lock, then finds the schema already at the target and does nothing.
    """
    engine = create_async_engine(url, hide_parameters=True)
    try:
        async with engine.connect() as conn, migration_lock(conn, url, lock_timeout), conn.begin():
            result = await conn.run_sync(_migrate_sync, target)
    finally:
        await engine.dispose()
    if result.direction != "none":
        log.info("migrated", before=result.before, after=result.after, direction=result.direction)
    return result


def migrate(url: str, target: str = "head", *, lock_timeout: float = 600.0) -> MigrationResult:
    return asyncio.run(migrate_async(url, target, lock_timeout=lock_timeout))


def _revisions_sync(connection: Connection) -> tuple[str | None, str | None]:
    script = ScriptDirectory.from_config(alembic_config())
    return MigrationContext.configure(connection).get_current_revision(), script.get_current_head()


async def revisions_async(url: str) -> tuple[str | None, str | None]:
    """(the database's revision, the latest revision this release knows)."""
    engine = create_async_engine(url, hide_parameters=True)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_revisions_sync)
    finally:
        await engine.dispose()
