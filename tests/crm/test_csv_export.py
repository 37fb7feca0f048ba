"""``leadflow leads export``: the CSV fallback, run in-process (tests/cli.py) on a seeded SQLite database."""

from __future__ import annotations

import base64
import csv
import io
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from leadflow.integrations.csv_export import COLUMNS, ExportFilter, iter_leads, parse_bound, safe_cell
from leadflow.kit.state import state_of
from leadflow.leads.repository import leads
from tests import cli
from tests.cli import CliResult
from tests.conftest import TEST_KEY, Harness, example_lead

OTHER = "cloud-backup-2025"


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> CliResult:
    return cli.run_cli(args, env, cwd, code=None)


def run_many(commands: list[list[str]], env: dict[str, str], cwd: Path) -> list[CliResult]:
    return [run_cli(args, env, cwd) for args in commands]


def rows_of(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


async def capture(h: Harness, campaign_id: str = "nextcloud-installation-2025", **contact: Any) -> str:
    body = example_lead(**contact)
    body["campaign_id"] = campaign_id
    response = await h.client.post("/v1/api/leads", json=body)
    assert response.status_code == 201, response.text
    lead_id: str = response.json()["lead_id"]
    return lead_id


async def backdate(h: Harness, lead_id: str, when: datetime) -> None:
    async with h.engine.begin() as conn:  # through the column type, as the application stores it
        await conn.execute(update(leads).where(leads.c.public_id == lead_id).values(created_at=when))


@pytest.fixture
async def seeded(harness: Harness, campaign: dict[str, Any], admin: dict[str, str]) -> dict[str, str]:
    """Leads in two campaigns and on several days; returns name -> public lead id."""
    other = await harness.client.post(
        "/v1/api/campaigns",
        headers=admin,
        json={"id": OTHER, "name": "Cloud Backup", "campaign_type": "service", "services": ["Cloud Backup"]},
    )
    assert other.status_code == 201, other.text
    ids = {
        "plain": await capture(harness, firstName="Ada", lastName="Lovelace", email="ada@example.org"),
        "formula": await capture(
            harness,
            firstName='=HYPERLINK("http://evil.example","click")',
            lastName="+SUM(A1:A9)",
            email="eve@example.org",
            company="@cmd|' /C calc'!A0",
        ),
        "minus": await capture(harness, firstName="-2+3", lastName="Ok", email="minus@example.org"),
        "other": await capture(harness, OTHER, firstName="Otto", lastName="Other", email="otto@example.org"),
    }
    await backdate(harness, ids["plain"], datetime(2025, 9, 30, 23, 59, tzinfo=UTC))
    await backdate(harness, ids["formula"], datetime(2025, 10, 1, 0, 0, tzinfo=UTC))
    await backdate(harness, ids["minus"], datetime(2025, 10, 2, 12, 0, tzinfo=UTC))
    await backdate(harness, ids["other"], datetime(2025, 10, 1, 9, 0, tzinfo=UTC))
    return ids


@pytest.fixture
def cli_env(harness: Harness) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEY", "DATABASE_URL", "LEADFLOW_ENV")}
    env.update(DATABASE_URL=harness.settings.database_url, ENCRYPTION_KEY=TEST_KEY, LEADFLOW_ENV="test")
    return env


async def test_export_to_a_private_file_decrypted_and_filtered(
    harness: Harness, seeded: dict[str, str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "leads.csv"
    result = run_cli(
        ["leads", "export", "--campaign", "nextcloud-installation-2025", "--output", str(out)],
        cli_env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip().endswith("exported 3 leads")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    rows = rows_of(out.read_text(encoding="utf-8"))
    assert [r["lead_id"] for r in rows] == [
        seeded["minus"],
        seeded["formula"],
        seeded["plain"],
    ]  # newest first
    ada = rows[2]
    assert (ada["first_name"], ada["last_name"], ada["email"]) == ("Ada", "Lovelace", "ada@example.org")
    assert ada["phone"] == "+15551234567"  # a plain number is left alone
    assert ada["company"] == "Acme Corp"
    assert ada["message"] == "Need Nextcloud setup for 50 users ASAP"
    assert ada["campaign_id"] == "nextcloud-installation-2025"
    assert (ada["lead_score"], ada["lead_grade"], ada["status"]) == ("85", "A", "new")
    assert ada["consent_given"] == "true"
    assert ada["created_at"] == "2025-09-30T23:59:00+00:00"
    assert "ip_address" not in ada and "user_agent" not in ada

    # one audit entry for the read of personal data
    details = await harness.scalar("SELECT details FROM audit_log WHERE action = 'leads.export'")
    assert details is not None and '"rows": 3' in str(details)
    assert await harness.scalar("SELECT channel FROM audit_log WHERE action = 'leads.export'") == "cli"


async def test_formulas_are_neutralised(
    seeded: dict[str, str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_cli(["leads", "export"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r["lead_id"]: r for r in rows_of(result.stdout)}
    evil = rows[seeded["formula"]]
    assert evil["first_name"] == '\'=HYPERLINK("http://evil.example","click")'
    assert evil["last_name"] == "'+SUM(A1:A9)"
    assert evil["company"] == "'@cmd|' /C calc'!A0"
    assert rows[seeded["minus"]]["first_name"] == "'-2+3"
    for row in rows.values():
        for value in row.values():
            assert value[:1] not in ("=", "+", "-", "@") or value.lstrip("+-").replace(".", "").isdigit()


FILTERS: list[tuple[list[str], set[str]]] = [
    (["--since", "2025-10-01"], {"formula", "minus", "other"}),
    (["--until", "2025-10-01"], {"plain", "formula", "other"}),  # the whole day, inclusive
    (["--since", "2025-10-01", "--until", "2025-10-01"], {"formula", "other"}),
    (["--since", "2025-10-01T00:00:01Z", "--until", "2025-10-02T12:00:00+00:00"], {"other"}),
    (["--campaign", OTHER, "--since", "2025-10-01"], {"other"}),
    (["--campaign", "no-such-campaign"], set()),
]


async def test_filters(seeded: dict[str, str], cli_env: dict[str, str], tmp_path: Path) -> None:
    results = run_many([["leads", "export", "-o", "-", *args] for args, _ in FILTERS], cli_env, tmp_path)
    for (args, expected), result in zip(FILTERS, results, strict=True):
        assert result.returncode == 0, result.stderr
        exported = {r["lead_id"] for r in rows_of(result.stdout)}
        assert {name for name, lead_id in seeded.items() if lead_id in exported} == expected, args


async def test_bad_dates_exit_2(harness: Harness, cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = [
        ["--since", "yesterday"],
        ["--until", "2025-13-01"],
        ["--since", "2025-10-02", "--until", "2025-10-01"],
    ]
    for args, result in zip(
        bad, run_many([["leads", "export", *a] for a in bad], cli_env, tmp_path), strict=True
    ):
        assert result.returncode == 2, args
        assert result.stdout == ""


async def test_unwritable_output_exits_1(harness: Harness, cli_env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(["leads", "export", "--output", str(tmp_path / "missing" / "x.csv")], cli_env, tmp_path)
    assert result.returncode == 1
    assert "cannot write" in result.stderr


async def test_wrong_key_leaves_no_partial_file(
    harness: Harness, seeded: dict[str, str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "leads.csv"
    other_key = base64.b64encode(bytes(range(100, 132))).decode()
    result = run_cli(
        ["leads", "export", "--output", str(out)], dict(cli_env, ENCRYPTION_KEY=other_key), tmp_path
    )
    assert result.returncode == 1
    assert "cannot decrypt the leads" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    details = await harness.scalar("SELECT details FROM audit_log WHERE action = 'leads.export'")
    assert '"completed": false' in str(details)


async def test_existing_file_is_tightened_and_replaced(
    seeded: dict[str, str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "leads.csv"
    out.write_text("stale\n")
    out.chmod(0o644)
    result = run_cli(["leads", "export", "--campaign", OTHER, "--output", str(out)], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [r["lead_id"] for r in rows_of(out.read_text())] == [seeded["other"]]


async def test_streams_page_by_page(harness: Harness, seeded: dict[str, str]) -> None:
    async with harness.engine.connect() as conn:
        paged = [
            r["lead_id"] async for r in iter_leads(conn, state_of(harness.app).cipher, ExportFilter(), page=2)
        ]
        whole = [
            r["lead_id"]
            async for r in iter_leads(conn, state_of(harness.app).cipher, ExportFilter(), page=500)
        ]
    assert paged == whole
    assert sorted(paged) == sorted(seeded.values())


# -- pure helpers -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+cmd", "'+cmd"),
        ("-cmd", "'-cmd"),
        ("@SUM(1)", "'@SUM(1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("  =1+1", "'  =1+1"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("+15551234567", "+15551234567"),
        ("-5", "-5"),
        ("-5.25", "-5.25"),
        ("-5e3", "'-5e3"),
        ("John", "John"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (True, "true"),
        (False, "false"),
        (42, "42"),
    ],
)
def test_safe_cell(value: object, cell: str) -> None:
    assert safe_cell(value) == cell


def test_safe_cell_formats_dates_and_decimals() -> None:
    from decimal import Decimal

    assert safe_cell(datetime(2025, 10, 3, 10, 30, tzinfo=UTC)) == "2025-10-03T10:30:00+00:00"
    assert safe_cell(Decimal("7500.50")) == "7500.50"
    assert safe_cell(Decimal("-1E+2")) == "-100"


def test_parse_bound() -> None:
    assert parse_bound("2025-10-01", end=False) == datetime(2025, 10, 1, tzinfo=UTC)
    assert parse_bound("2025-10-01", end=True) == datetime(2025, 10, 2, tzinfo=UTC)
    assert parse_bound("2025-10-01T10:00:00", end=True) == datetime(2025, 10, 1, 10, tzinfo=UTC)
    assert parse_bound("2025-10-01T12:00:00+02:00", end=False) == datetime(2025, 10, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_bound("01/10/2025", end=False)
