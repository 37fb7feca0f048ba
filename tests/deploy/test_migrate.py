"""`leadflow migrate` under its database-wide lock, `--to REVISION` (rollback) and `serve --migrate`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from leadflow.cli import app
from leadflow.config import normalise_database_url
from leadflow.migrations.runner import (
    PG_LOCK_KEY,
    MigrationError,
    alembic_config,
    migrate_async,
)
from tests.conftest import TEST_KEY, _admin, _server_url

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
ENV = {"DATABASE_URL": "", "ENCRYPTION_KEY": TEST_KEY, "LEADFLOW_ENV": "test", "RUN_WORKER": "false"}


@pytest.fixture
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def empty_db(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A brand-new empty database on the backend named by the test's ``kind`` parameter."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
        return
    env = {"postgres": "LEADFLOW_TEST_POSTGRES_URL", "mysql": "LEADFLOW_TEST_MYSQL_URL"}[kind]
    base = normalise_database_url(_server_url(env) or "")
    name = f"leadflow_mig_{uuid.uuid4().hex[:8]}"
    await _admin(base, f"CREATE DATABASE {name}")
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(base, f"DROP DATABASE {name}")


async def _state(url: str) -> tuple[str | None, set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            version = None
            if "alembic_version" in tables:
                version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            return version, tables
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_concurrent_migrations_wait_for_the_lock_and_migrate_once(empty_db: str) -> None:
    # Three replicas starting with `serve --migrate` at the same moment: without the lock the
    # losers would fail on tables that already exist (or half-created ones).
    results = await asyncio.gather(*(migrate_async(empty_db) for _ in range(3)))
    assert sorted(r.direction for r in results) == ["none", "none", "upgrade"]
    upgraded = next(r for r in results if r.direction == "upgrade")
    assert upgraded.before is None and upgraded.after == HEAD
    assert all(r.after == HEAD for r in results)
    version, tables = await _state(empty_db)
    assert version == HEAD
    assert {"leads", "jobs", "campaigns"} <= tables


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"], indirect=True)
def test_cli_migrate_to_a_revision_rolls_back_and_forward(empty_db: str) -> None:
    runner = CliRunner()
    env = dict(ENV, DATABASE_URL=empty_db)
    first = runner.invoke(app, ["migrate"], env=env)
    assert first.exit_code == 0, first.output
    assert "latest schema" in first.output
    assert asyncio.run(_state(empty_db))[0] == HEAD

    shown = runner.invoke(app, ["migrate", "--show"], env=env)
    assert shown.exit_code == 0 and shown.output.strip() == f"database at {HEAD}; latest {HEAD}"

    back = runner.invoke(app, ["migrate", "--to", "0004"], env=env)
    assert back.exit_code == 0, back.output
    assert f"downgraded from {HEAD} to 0004" in back.output
    version, tables = asyncio.run(_state(empty_db))
    assert version == "0004"
    assert "analytics_state" not in tables and "leads" in tables  # 0005's tables are gone, data kept

    assert (
        runner.invoke(app, ["migrate", "--show"], env=env).output.strip()
        == f"database at 0004; latest {HEAD}"
    )
    same = runner.invoke(app, ["migrate", "--to", "0004"], env=env)
    assert same.exit_code == 0 and "already at 0004" in same.output

    forward = runner.invoke(app, ["migrate", "--to", HEAD or "head"], env=env)
    assert forward.exit_code == 0, forward.output
    assert f"upgraded from 0004 to {HEAD}" in forward.output
    version, tables = asyncio.run(_state(empty_db))
    assert version == HEAD and "analytics_state" in tables

    unknown = runner.invoke(app, ["migrate", "--to", "9999"], env=env)
    assert unknown.exit_code == 1
    assert "unknown revision '9999'" in unknown.output
    assert "Traceback" not in unknown.output


@pytest.mark.parametrize("kind", ["postgres"], indirect=True)
async def test_postgres_migration_waits_for_the_advisory_lock_and_gives_up_after_its_timeout(
    empty_db: str,
) -> None:
    holder = create_async_engine(empty_db)
    try:
        async with holder.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
            await conn.commit()
            with pytest.raises(MigrationError, match="held the lock"):
                await migrate_async(empty_db, lock_timeout=0.2)
            waiting = asyncio.create_task(migrate_async(empty_db))
            for _ in range(200):  # until the migrator is seen queued behind our lock (bounded)
                queued = (
                    await conn.execute(
                        text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                    )
                ).scalar()
                await conn.commit()
                if queued:
                    break
                await asyncio.sleep(0.05)
            assert queued == 1
            assert not waiting.done()
            assert (await _state(empty_db))[0] is None  # nothing migrated while we hold the lock
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
            await conn.commit()
            result = await asyncio.wait_for(waiting, 120)
        assert result.direction == "upgrade" and result.after == HEAD
    finally:
        await holder.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_migrate_is_the_container_entry_command(tmp_path: Path) -> None:
    """`leadflow serve --migrate` (the image's CMD) migrates an empty database, then serves."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "ENCRYPTION_", "LEADFLOW_"))}
    env.update(ENV, DATABASE_URL=f"sqlite:///{tmp_path}/var/leadflow.db", HOST="127.0.0.1", PORT=str(port))
    leadflow = Path(sys.executable).parent / "leadflow"
    proc = subprocess.Popen(
        [str(leadflow), "serve", "--migrate", "--no-worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert status == 200, proc.stderr.read() if proc.poll() is not None and proc.stderr else status
        assert asyncio.run(_state(f"sqlite+aiosqlite:///{tmp_path}/var/leadflow.db"))[0] == HEAD
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode in (0, -signal.SIGTERM), err  # uvicorn re-raises SIGTERM after a clean stop
    assert '"event":"stopped"' in err
    assert '"event":"migrated"' in err


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"], indirect=True)
def test_0016_gives_existing_deliveries_their_connector(empty_db: str) -> None:
    """Deliveries enqueued before the ``connector`` column get it from their dedup key."""
    runner = CliRunner()
    env = dict(ENV, DATABASE_URL=empty_db)
    assert runner.invoke(app, ["migrate", "--to", "0015"], env=env).exit_code == 0

    at = datetime(2026, 1, 1, tzinfo=UTC if empty_db.startswith("postgresql") else None)

    async def fill() -> None:
        engine = create_async_engine(empty_db)
        try:
            async with engine.begin() as conn:
                for n, (kind, key) in enumerate(
                    [
                        ("deliver", "deliver:slack:1"),
                        ("deliver", "correct:hubspot:2:1733220000000"),
                        ("lead.process", "process:3"),
                        ("reports.daily", None),
                    ]
                ):
                    await conn.execute(
                        text(
                            "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, run_at,"
                            " dedup_key, created_at, updated_at) VALUES (:kind, '{}', 'done', 1, 8,"
                            " :at, :key, :at, :at)"
                        ),
                        {"kind": kind, "key": key or f"periodic:{n}", "at": at},
                    )
        finally:
            await engine.dispose()

    async def connectors() -> dict[str, str | None]:
        engine = create_async_engine(empty_db)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT dedup_key, connector FROM jobs"))
                return {r[0]: r[1] for r in rows}
        finally:
            await engine.dispose()

    asyncio.run(fill())
    upgraded = runner.invoke(app, ["migrate"], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    assert asyncio.run(connectors()) == {
        "deliver:slack:1": "slack",
        "correct:hubspot:2:1733220000000": "hubspot",
        "process:3": None,
        "periodic:3": None,
    }
