"""``leadflow leads import FILE``: the CSV import of the workspace from the command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.conftest import TEST_KEY, Harness, example_lead
from tests.crm.test_csv_export import run_cli
from tests.web.test_lead_pages import CSV


def _env(harness: Harness) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEY", "DATABASE_URL", "LEADFLOW_ENV")}
    env.update(DATABASE_URL=harness.settings.database_url, ENCRYPTION_KEY=TEST_KEY, LEADFLOW_ENV="test")
    return env


async def test_import_a_file_twice_and_a_bad_row(
    harness: Harness, campaign: dict[str, Any], tmp_path: Path
) -> None:
    env = _env(harness)
    file = tmp_path / "leads.csv"
    file.write_bytes(CSV)
    checked = run_cli(
        ["leads", "import", str(file), "--campaign", campaign["id"], "--dry-run"], env, tmp_path
    )
    assert checked.returncode == 1 and "2 rows can be imported, 2 have errors" in checked.stdout
    assert await harness.scalar("SELECT count(*) FROM leads") == 0
    first = run_cli(["leads", "import", str(file), "--campaign", campaign["id"]], env, tmp_path)
    assert "2 created, 0 already imported, 0 duplicates, 2 not imported" in first.stdout, first.stderr
    assert "line 3: email:" in first.stdout and first.returncode == 1
    again = run_cli(["leads", "import", str(file), "--campaign", campaign["id"]], env, tmp_path)
    assert "0 created, 2 already imported" in again.stdout, again.stderr
    assert await harness.scalar("SELECT count(*) FROM leads WHERE source = 'import'") == 2
    wrong = run_cli(
        ["leads", "import", str(file), "--campaign", campaign["id"], "--map", "email=Nope"], env, tmp_path
    )
    assert wrong.returncode == 2 and "FIELD=COLUMN" in wrong.stderr
    actor = await harness.scalar("SELECT actor FROM audit_log WHERE action = 'leads.import' LIMIT 1")
    assert actor == "cli"


async def test_index_phones_fills_the_blind_index_of_older_leads(
    harness: Harness, campaign: dict[str, Any], tmp_path: Path
) -> None:
    env = _env(harness)
    assert (await harness.client.post("/v1/api/leads", json=example_lead())).status_code == 201
    expected = await harness.scalar("SELECT phone_hash FROM leads")
    await harness.execute("UPDATE leads SET phone_hash = NULL")  # as stored before migration 0012
    done = run_cli(["leads", "index-phones", "--batch", "1"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert await harness.scalar("SELECT phone_hash FROM leads") == expected
