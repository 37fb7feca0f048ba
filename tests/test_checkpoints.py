"""SQLite WAL checkpoints run in a thread of the served process, not inside a request's commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from leadflow.db import AUTOCHECKPOINT_PAGES, Checkpointer, apply_sqlite_pragmas
from tests.conftest import Harness, example_lead


def _wal_database(path: Path, rows: int) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    apply_sqlite_pragmas(db)
    db.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * rows)
    return db


def test_connections_leave_checkpoints_to_the_thread_below_a_bound(tmp_path: Path) -> None:
    db = _wal_database(tmp_path / "a.db", 10)
    assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == AUTOCHECKPOINT_PAGES
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_passive_checkpoint_copies_the_whole_wal(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    writer = _wal_database(path, 2000)  # ~250 pages, far below the automatic checkpoint
    db = sqlite3.connect(path, isolation_level=None)
    first = Checkpointer.checkpoint(db)
    assert first is not None
    busy, pages, copied = first
    assert busy == 0 and pages > 200 and copied == pages
    # Once all of it is copied the next writer starts the WAL again from its beginning.
    writer.executemany("INSERT INTO t VALUES (?)", [("y" * 500,)] * 10)
    again = Checkpointer.checkpoint(db)
    assert again is not None and again[1] < pages
    db.close()
    writer.close()


async def test_the_served_app_checkpoints_a_captured_lead_into_the_database_file(
    harness: Harness, admin: dict[str, str], campaign: dict[str, Any]
) -> None:
    path = harness.settings.sqlite_path()
    assert path is not None
    body = {**example_lead(), "campaign_id": campaign["id"]}
    response = await harness.client.post("/v1/api/leads", json=body, headers=admin)
    assert response.status_code == 201, response.text
    public_id = response.json()["lead_id"].encode()
    # The commit put the lead in the -wal file only (far below the automatic checkpoint); the app's
    # checkpointer thread copies it into the database file within about a second.
    for _ in range(100):
        if public_id in path.read_bytes():
            break
        await asyncio.sleep(0.05)
    assert public_id in path.read_bytes()
