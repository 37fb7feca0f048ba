"""``leadflow users …`` and ``leadflow quickstart``, in-process (Typer's CliRunner) on a migrated SQLite file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadflow.cli import app
from tests.conftest import TEST_KEY

STRONG = "a long enough passphrase"


@pytest.fixture
def env(sqlite_template: Path, tmp_path: Path) -> dict[str, str]:
    db = tmp_path / "leadflow.db"
    shutil.copy(sqlite_template, db)
    return {
        "DATABASE_URL": f"sqlite:///{db}",
        "ENCRYPTION_KEY": TEST_KEY,
        "LEADFLOW_ENV": "test",
        "PUBLIC_BASE_URL": "https://leads.example.com",
    }


def run(env: dict[str, str], *args: str, stdin: str | None = None, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=env, input=stdin)
    assert result.exit_code == code, (args, result.output, result.stderr)
    return result.stdout if code == 0 else result.stderr


def listed(env: dict[str, str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in run(env, "users", "list").splitlines()]


def test_create_list_deactivate(env: dict[str, str]) -> None:
    out = run(
        env, "users", "create", "--email", "Amy@Example.com", "--name", "Amy", "--role", "sales",
        "--password-stdin", stdin=STRONG + "\n",
    )  # fmt: skip
    assert out.strip() == "created sales user #1 amy@example.com"
    [amy] = listed(env)
    assert amy["email"] == "amy@example.com" and amy["role"] == "sales" and amy["active"] is True
    assert "password" not in json.dumps(amy) and STRONG not in json.dumps(amy)

    again = run(
        env, "users", "create", "--email", "amy@example.com", "--name", "Amy", "--role", "sales",
        "--password-stdin", stdin=STRONG, code=2,
    )  # fmt: skip
    assert "exists already" in again

    assert "deactivated" in run(env, "users", "deactivate", "--email", "amy@example.com")
    assert listed(env)[0]["active"] is False
    assert "no user" in run(env, "users", "deactivate", "--email", "nobody@example.com", code=1)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short1", "at least 12 characters"),
        ("password1234", "too common"),
        ("aaaaaaaaaaaaaaaa", "too common or too repetitive"),
        ("amy.doe-1234567", "must not contain your e-mail"),
    ],
)
def test_weak_passwords_are_refused(env: dict[str, str], password: str, why: str) -> None:
    err = run(
        env, "users", "create", "--email", "amy.doe@example.com", "--name", "Amy", "--role", "admin",
        "--password-stdin", stdin=password, code=2,
    )  # fmt: skip
    assert why in err and password not in err
    assert listed(env) == []


def test_create_needs_password_on_stdin_and_a_known_role(env: dict[str, str]) -> None:
    base = ["users", "create", "--email", "a@example.com", "--name", "A"]
    assert "--password-stdin" in run(env, *base, "--role", "sales", code=2)
    assert "unknown role" in run(env, *base, "--role", "ingest", "--password-stdin", stdin=STRONG, code=2)
    assert "no routing team member" in run(
        env,
        *base,
        "--role",
        "sales",
        "--member-email",
        "x@example.com",
        "--password-stdin",
        stdin=STRONG,
        code=2,
    )


def test_reset_password_prints_a_one_time_link(env: dict[str, str]) -> None:
    run(env, "users", "create", "--email", "b@example.com", "--name", "B", "--role", "manager",
        "--password-stdin", stdin=STRONG)  # fmt: skip
    out = run(env, "users", "reset-password", "--email", "b@example.com").splitlines()
    assert "works once, for 60 minutes" in out[0]
    assert out[1].startswith("https://leads.example.com/reset-password/") and len(out[1]) > 60
    assert "no active user" in run(env, "users", "reset-password", "--email", "c@example.com", code=1)


def test_quickstart_creates_the_first_admin_and_token_once(env: dict[str, str]) -> None:
    first = run(env, "quickstart", "--leads", "2").splitlines()
    assert first[-1].startswith("lf_")
    assert any("as admin@leadflow.local" in line for line in first)
    password = first[first.index(next(x for x in first if "as admin@leadflow.local" in x)) + 1].strip()
    assert len(password) >= 12
    [admin] = listed(env)
    assert admin["role"] == "admin" and admin["email"] == "admin@leadflow.local"

    second = run(env, "quickstart", "--leads", "2")
    assert "lf_" not in second and password not in second
    assert "leadflow tokens create" in second
    assert len(listed(env)) == 1
    tokens = [json.loads(line) for line in run(env, "tokens", "list").splitlines()]
    assert [t["name"] for t in tokens] == ["quickstart"]


def test_reset_link_is_e_mailed_when_a_transport_is_configured(env: dict[str, str]) -> None:
    from tests.fakes.smtp import FakeSmtp

    run(env, "users", "create", "--email", "d@example.com", "--name", "Dee", "--role", "sales",
        "--password-stdin", stdin=STRONG)  # fmt: skip
    with FakeSmtp() as smtp:
        mail_env = {**env, "SMTP_HOST": smtp.host, "SMTP_PORT": str(smtp.port), "SMTP_STARTTLS": "false"}
        result = CliRunner().invoke(
            app, ["users", "reset-password", "--email", "d@example.com"], env=mail_env
        )
        assert result.exit_code == 0, result.output
        assert "e-mailed the link to d@example.com" in result.stderr
        link = result.stdout.strip().splitlines()[-1]
        [mail] = smtp.messages
        assert mail.rcpt_tos == ["d@example.com"]
        assert link in mail.data.decode().replace("=\r\n", "")
