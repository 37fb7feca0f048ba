"""The leadflow command line against a fresh SQLite database: in-process (tests/cli.py), except the
installed entry point itself, run once as a real process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import CliResult, run_cli

BIN = Path(sys.executable).parent / "leadflow"


def _run(args: list[str], env: dict[str, str], cwd: Path, check: bool = True) -> CliResult:
    return run_cli(args, env, cwd, code=0 if check else None)


def test_the_installed_entry_point_runs_the_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    for group in ("migrate", "serve", "worker", "campaigns", "tokens", "leads", "privacy", "keys", "reports"):
        assert group in result.stdout


def test_no_arguments_prints_the_help(tmp_path: Path) -> None:
    result = run_cli([], cwd=tmp_path, code=2)
    assert "Usage:" in result.stdout + result.stderr and "campaigns" in result.stdout + result.stderr


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEY", "DATABASE_URL", "LEADFLOW_ENV")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/var/leadflow.db"
    return env


def test_migrate_generates_a_private_key_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = _run(["migrate"], cli_env, tmp_path)
    key = tmp_path / "var" / "encryption.key"
    assert key.exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "generated a development encryption key" in result.stderr
    again = _run(["migrate"], cli_env, tmp_path)
    assert "generated" not in again.stderr


def test_production_refuses_missing_or_weak_key(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(cli_env, LEADFLOW_ENV="production")
    missing = _run(["migrate"], env, tmp_path, check=False)
    assert missing.returncode == 2
    assert "ENCRYPTION_KEY is required" in missing.stderr
    weak = _run(["migrate"], dict(env, ENCRYPTION_KEY="A" * 43 + "="), tmp_path, check=False)
    assert weak.returncode == 2
    assert "weak" in weak.stderr
    short = _run(["migrate"], dict(env, ENCRYPTION_KEY="32-byte-secret-key"), tmp_path, check=False)
    assert short.returncode == 2
    serve = _run(["serve", "--port", "1"], env, tmp_path, check=False)
    assert serve.returncode == 2
    assert not (tmp_path / "var" / "encryption.key").exists()


def test_campaigns_tokens_and_demo(cli_env: dict[str, str], tmp_path: Path) -> None:
    _run(["migrate"], cli_env, tmp_path)
    created = _run(
        [
            "campaigns",
            "create",
            "--id",
            "cli-test",
            "--name",
            "CLI Test",
            "--type",
            "service",
            "--budget",
            "250.50",
            "--token",
            "--origin",
            "https://nexlink.website",
            "--service",
            "Cloud Backup",
        ],
        cli_env,
        tmp_path,
    )
    lines = created.stdout.strip().splitlines()
    assert lines[0] == "created campaign cli-test (active)"
    assert lines[-1].startswith("lfc_")
    dup = _run(
        ["campaigns", "create", "--id", "cli-test", "--name", "x", "--type", "service"],
        cli_env,
        tmp_path,
        check=False,
    )
    assert dup.returncode == 1
    assert "CAMPAIGN_EXISTS" in dup.stderr
    bad = _run(
        ["campaigns", "create", "--id", "y", "--name", "x", "--type", "webinar"],
        cli_env,
        tmp_path,
        check=False,
    )
    assert bad.returncode == 2

    listed = _run(["campaigns", "list"], cli_env, tmp_path)
    assert '"id":"cli-test"' in listed.stdout
    assert '"has_token":true' in listed.stdout

    token = _run(["tokens", "create", "--role", "analyst", "--name", "reporting"], cli_env, tmp_path)
    assert token.stdout.strip().splitlines()[-1].startswith("lf_")
    bad_role = _run(["tokens", "create", "--role", "root", "--name", "x"], cli_env, tmp_path, check=False)
    assert bad_role.returncode == 2

    demo = _run(["demo", "--leads", "40"], cli_env, tmp_path)
    assert "40 leads added" in demo.stdout
    again = _run(["demo", "--leads", "40"], cli_env, tmp_path)
    assert "0 leads added" in again.stdout


def test_quickstart_prints_admin_token_last(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = _run(["quickstart", "--leads", "5"], cli_env, tmp_path)
    assert result.stdout.strip().splitlines()[-1].startswith("lf_")
    assert "5 leads added" in result.stdout


def test_tokens_list_and_revoke(cli_env: dict[str, str], tmp_path: Path) -> None:
    _run(["migrate"], cli_env, tmp_path)
    secret = _run(
        ["tokens", "create", "--role", "sales", "--name", "amy", "--subject", "amy@x.io"], cli_env, tmp_path
    )
    token = secret.stdout.strip().splitlines()[-1]
    listed = _run(["tokens", "list"], cli_env, tmp_path).stdout
    assert '"role":"sales"' in listed and '"subject":"amy@x.io"' in listed
    assert token not in listed and token[12:] not in listed
    assert _run(["tokens", "revoke", "1"], cli_env, tmp_path).stdout.strip() == "token #1 revoked"
    assert '"revoked_at":null' not in _run(["tokens", "list"], cli_env, tmp_path).stdout
    again = _run(["tokens", "revoke", "1"], cli_env, tmp_path, check=False)
    assert again.returncode == 1
