"""Key rotation through the CLI: new primary key, old rows readable, resumable re-encryption."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.demo import demo_payload
from leadflow.kit.state import state_of
from leadflow.security.crypto import FieldCipher
from tests.cli import run_cli


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """``leadflow ARGS`` in-process (tests/cli.py), in ``cwd`` with exactly ``env``."""
    return run_cli(args, env, cwd).stdout


async def _key_ids(db: Path) -> set[str]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT email, first_name, ip_address FROM leads"))).all()
    finally:
        await engine.dispose()
    return {FieldCipher.key_id_of(blob) for row in rows for blob in row if blob is not None}


async def test_rotate_keeps_old_rows_readable_and_reencrypts_resumably(tmp_path: Path) -> None:
    db = tmp_path / "var" / "leadflow.db"
    env = {
        k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEY", "DATABASE_URL", "BLIND_INDEX_KEY")
    }
    env["DATABASE_URL"] = f"sqlite:///{db}"
    _cli(["migrate"], env, tmp_path)
    _cli(["demo", "--leads", "25"], env, tmp_path)
    old_ids = await _key_ids(db)
    assert len(old_ids) == 1

    out = _cli(["keys", "rotate", "--no-reencrypt"], env, tmp_path)
    assert "new primary key written" in out
    key_file = (tmp_path / "var" / "encryption.key").read_text()
    assert "old=" in key_file and "blind=" in key_file
    assert oct((tmp_path / "var" / "encryption.key").stat().st_mode)[-3:] == "600"
    assert await _key_ids(db) == old_ids  # nothing rewritten yet

    assert "rows re-encrypted" in _cli(
        ["keys", "reencrypt", "--batch", "10", "--max-batches", "1"], env, tmp_path
    )
    mixed = await _key_ids(db)
    assert len(mixed) == 2  # part way: old and new keys side by side, both readable
    _cli(["keys", "reencrypt", "--batch", "10"], env, tmp_path)
    new_ids = await _key_ids(db)
    assert len(new_ids) == 1 and new_ids != old_ids

    # Old leads read fine through the API, and de-duplication (blind index) still links the person.
    settings = Settings(
        database_url=f"sqlite:///{db}",
        encryption_key_file=tmp_path / "var" / "encryption.key",
        run_worker=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        from leadflow.security.tokens import create_token

        async with state_of(app).engine.begin() as conn:
            token = (await create_token(conn, name="t", role="admin")).token
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            auth = {"Authorization": f"Bearer {token}"}
            page = (await client.get("/v1/api/leads", headers=auth, params={"limit": 200})).json()["items"]
            assert len(page) == 25 and all("@" in item["email"] for item in page)
            import random

            body = demo_payload(random.Random(2025), "nextcloud-installation-2025", 0)  # the first demo lead
            again = await client.post("/v1/api/leads", json=body)
            assert again.status_code == 201, again.text  # demo leads are older than the 24 h window
            lead = (await client.get(f"/v1/api/leads/{again.json()['lead_id']}", headers=auth)).json()
            assert lead["previous_lead_id"] is not None  # found through the unchanged blind index
