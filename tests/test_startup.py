"""Start-up checks: every command (``serve`` and ``worker`` included) answers a missing key, an
unreachable database or a schema that is not migrated with one line on stderr, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from leadflow.cli import app
from leadflow.migrations.runner import upgrade
from tests.conftest import TEST_KEY

BIN = Path(sys.executable).parent / "leadflow"

# Arguments that get each command past its own option parsing, to its start-up checks.
ARGS: dict[str, list[str]] = {
    "campaigns create": ["--id", "c1", "--name", "C", "--type", "service"],
    "campaigns list": [],
    "demo": ["--leads", "1"],
    "jobs list": [],
    "jobs retry": ["1"],
    "jobs retry-dead": [],
    "keys reencrypt": [],
    "keys rotate": [],
    "leads export": [],
    "leads import": [
        str(Path(__file__).resolve()),
        "--campaign",
        "c1",
    ],  # any existing file: start-up fails first
    "leads index-phones": [],
    "leads update": ["lead_0123456789ab", "--company", "Acme"],
    "members add": ["--name", "N", "--email", "member@example.com"],
    "members deactivate": ["--email", "member@example.com"],
    "members list": [],
    "migrate": [],
    "privacy erase": ["--email", "person@example.com"],
    "privacy consent": ["--email", "person@example.com", "--action", "grant"],
    "privacy export": ["--email", "person@example.com"],
    "privacy purge": ["--dry-run"],
    "privacy withdraw": ["--email", "person@example.com"],
    "quickstart": [],
    "reports send": ["--period", "daily", "--dry-run"],
    "rules add": ["--name", "R", "--member-email", "member@example.com"],
    "rules list": [],
    "serve": ["--port", "1"],
    "tokens create": ["--role", "admin", "--name", "t"],
    "tokens list": [],
    "tokens revoke": ["1"],
    "users create": ["--email", "u@example.com", "--name", "U", "--role", "sales", "--password-stdin"],
    "users deactivate": ["--email", "u@example.com"],
    "users list": [],
    "users reset-password": ["--email", "u@example.com"],
    "worker": [],
}
NO_DATABASE = {"keys generate"}  # prints a new key; needs neither a key nor a database
# Commands that repair the condition under test instead of failing on it.
FIXES = {
    "not_migrated": {"migrate", "quickstart", "keys rotate"},  # they migrate; see below
    "missing_key": {"migrate", "quickstart"},  # they create the development key file
    "unreachable": {"keys rotate"},  # with ENCRYPTION_KEY set it only prints the new settings (no database)
}


def _commands() -> Iterator[str]:
    def walk(command: object, path: list[str]) -> Iterator[str]:
        children = getattr(command, "commands", None)
        if children:
            for name, child in sorted(children.items()):
                yield from walk(child, [*path, name])
        else:
            yield " ".join(path)

    yield from walk(typer.main.get_command(app), [])


def test_every_command_is_covered() -> None:
    assert set(_commands()) == set(ARGS) | NO_DATABASE


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cases(tmp_path: Path) -> dict[str, dict[str, str | None]]:
    empty = tmp_path / "empty.db"
    base: dict[str, str | None] = {
        "LEADFLOW_ENV": "development",
        "ENCRYPTION_KEY_FILE": str(tmp_path / "no.key"),
        "ENCRYPTION_OLD_KEYS": None,
        "BLIND_INDEX_KEY": None,
    }
    return {
        "unreachable": {
            **base,
            "ENCRYPTION_KEY": TEST_KEY,
            "DATABASE_URL": f"postgresql://leadflow@127.0.0.1:{_closed_port()}/leadflow",
        },
        "not_migrated": {**base, "ENCRYPTION_KEY": TEST_KEY, "DATABASE_URL": f"sqlite:///{empty}"},
        "missing_key": {**base, "ENCRYPTION_KEY": None, "DATABASE_URL": f"sqlite:///{empty}"},
    }


EXPECTED = {
    "unreachable": ("error: database unreachable: postgresql at 127.0.0.1:", "ConnectionRefusedError"),
    "not_migrated": ("error: database schema not migrated", "run `leadflow migrate`"),
    "missing_key": ("configuration error: no ENCRYPTION_KEY", "set ENCRYPTION_KEY"),
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_each_command_fails_in_one_line(
    case: str, cases: dict[str, dict[str, str | None]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    start, detail = EXPECTED[case]
    checked = 0
    for command, args in ARGS.items():
        if command in FIXES[case]:
            continue
        result = runner.invoke(app, [*command.split(), *args], env=cases[case])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code in (1, 2), (command, result.exit_code, result.output)
        assert len(lines) == 1, (command, result.stderr)
        assert lines[0].startswith(start) and detail in lines[0], (command, lines)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            command,
            result.exception,
        )
        checked += 1
    assert checked == len(ARGS) - len(FIXES[case])


def test_schema_behind_the_code_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "old.db"
    upgrade(f"sqlite+aiosqlite:///{db}", "0004")
    result = CliRunner().invoke(
        app, ["campaigns", "list"], env={"ENCRYPTION_KEY": TEST_KEY, "DATABASE_URL": f"sqlite:///{db}"}
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: database schema not migrated (at 0004, this version needs ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"]])
def test_real_processes_print_one_line(command: list[str], tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "ENCRYPTION_KEY": TEST_KEY,
        "DATABASE_URL": f"postgresql://leadflow@127.0.0.1:{_closed_port()}/leadflow",
    }
    result = subprocess.run(
        [str(BIN), *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: database unreachable: postgresql at 127.0.0.1:")
    assert result.stdout == ""
