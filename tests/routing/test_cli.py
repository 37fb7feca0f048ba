"""``leadflow members`` and ``leadflow rules``, run in-process (tests/cli.py) against a fresh SQLite database."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.cli import CliResult, run_cli


def cli(args: list[str], env: dict[str, str], cwd: Path, code: int = 0) -> CliResult:
    return run_cli(args, env, cwd, code=code)


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.strip().splitlines()]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {
        k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEY", "DATABASE_URL", "LEADFLOW_ENV")
    }
    values["DATABASE_URL"] = f"sqlite:///{tmp_path}/var/leadflow.db"
    cli(["migrate"], values, tmp_path)
    return values


def test_members(env: dict[str, str], tmp_path: Path) -> None:
    added = cli(
        [
            "members", "add", "--name", "Anna Schmidt", "--email", "Anna@Nexlink.Website",
            "--phone", "+49 151 12345678", "--service", "Nextcloud Installation", "--service", "Cloud Migration",
            "--region", "de", "--region", "US-CA", "--capacity", "5", "--weight", "2",
            "--timezone", "Europe/Berlin", "--hours", "08:30-17:00", "--days", "0,1,2,3",
        ],
        env,
        tmp_path,
    )  # fmt: skip
    assert added.stdout == "added team member #1 anna@nexlink.website\n"
    cli(["members", "add", "--name", "Bob", "--email", "bob@nexlink.website"], env, tmp_path)

    listed = json_lines(cli(["members", "list"], env, tmp_path).stdout)
    assert [m["email"] for m in listed] == ["anna@nexlink.website", "bob@nexlink.website"]
    anna, bob = listed
    assert {
        k: anna[k] for k in ("name", "phone", "services", "regions", "capacity", "weight", "working_hours")
    } == {
        "name": "Anna Schmidt",
        "phone": "+4915112345678",
        "services": ["Nextcloud Installation", "Cloud Migration"],
        "regions": ["DE", "US-CA"],
        "capacity": 5,
        "weight": 2,
        "working_hours": {
            "timezone": "Europe/Berlin",
            "days": [0, 1, 2, 3],
            "start": "08:30",
            "end": "17:00",
        },
    }
    assert (anna["active"], anna["open_leads"]) == (True, 0)
    assert (bob["capacity"], bob["weight"], bob["working_hours"], bob["services"]) == (50, 1, None, [])

    dup = cli(["members", "add", "--name", "Other", "--email", "ANNA@nexlink.website"], env, tmp_path, code=1)
    assert dup.stderr.strip() == "error: MEMBER_EXISTS: A team member with this e-mail already exists"

    deactivated = cli(["members", "deactivate", "--email", "BOB@nexlink.website"], env, tmp_path)
    assert deactivated.stdout == "deactivated team member #2 bob@nexlink.website (0 open leads)\n"
    assert [m["active"] for m in json_lines(cli(["members", "list"], env, tmp_path).stdout)] == [True, False]
    unknown = cli(["members", "deactivate", "--email", "nobody@nexlink.website"], env, tmp_path, code=1)
    assert unknown.stderr.strip() == "error: MEMBER_NOT_FOUND: No team member has this e-mail"

    with sqlite3.connect(tmp_path / "var" / "leadflow.db") as db:
        trail = db.execute("SELECT action, target_id, channel FROM audit_log ORDER BY id").fetchall()
    assert trail == [
        ("team_member.create", "1", "cli"),
        ("team_member.create", "2", "cli"),
        ("team_member.update", "2", "cli"),
    ]


BAD_MEMBER_INPUT = [
    (
        ["--timezone", "Mars/Olympus", "--hours", "09:00-17:00"],
        "invalid working_hours.timezone: Unknown time zone",
    ),
    (["--timezone", "UTC", "--hours", "9-17"], "invalid working_hours.start: times look like HH:MM"),
    (["--timezone", "UTC", "--hours", "09:00"], "invalid --hours: use START-END, e.g. 09:00-17:00"),
    (["--timezone", "UTC", "--hours", "09:00-17:00", "--days", "1,8"], "invalid working_hours.days.1:"),
    (["--timezone", "UTC", "--hours", "09:00-17:00", "--days", "mon"], "invalid working_hours.days.0:"),
    (["--timezone", "UTC"], "--timezone and --hours go together"),
    (["--hours", "09:00-17:00"], "--timezone and --hours go together"),
    (["--capacity", "-1"], "invalid capacity:"),
    (["--weight", "0"], "invalid weight:"),
    (["--region", "Bavaria"], "invalid regions.0:"),
    (["--phone", "0301234567"], "invalid phone: Phone numbers are international"),
    (["--email", "not-an-email"], "invalid email: Invalid email format"),
]


def test_members_add_refuses_bad_input(env: dict[str, str], tmp_path: Path) -> None:
    base = ["members", "add", "--name", "Carla", "--email", "carla@nexlink.website"]
    results = [cli([*base, *args], env, tmp_path, code=2) for args, _ in BAD_MEMBER_INPUT]
    for (args, message), result in zip(BAD_MEMBER_INPUT, results, strict=True):
        assert result.stderr.startswith(message), (args, result.stderr)
    assert cli(["members", "list"], env, tmp_path).stdout == ""


def test_rules(env: dict[str, str], tmp_path: Path) -> None:
    cli(["members", "add", "--name", "Anna", "--email", "anna@nexlink.website"], env, tmp_path)
    added = cli(
        [
            "rules", "add", "--name", "Hot DACH", "--member-email", "ANNA@nexlink.website",
            "--grade", "a", "--grade", "B", "--min-score", "70", "--country", "de", "--country", "AT",
            "--service", "Nextcloud Installation", "--campaign", "nextcloud-installation-2025",
            "--region", "us-ca", "--position", "10",
        ],
        env,
        tmp_path,
    )  # fmt: skip
    assert added.stdout == "added routing rule #1 'Hot DACH' -> anna@nexlink.website\n"
    cli(
        [
            "rules",
            "add",
            "--name",
            "Catch all",
            "--member-email",
            "anna@nexlink.website",
            "--position",
            "500",
        ],
        env,
        tmp_path,
    )
    cli(
        ["rules", "add", "--name", "First", "--member-email", "anna@nexlink.website", "--position", "1"],
        env,
        tmp_path,
    )

    listed = json_lines(cli(["rules", "list"], env, tmp_path).stdout)
    assert [r["name"] for r in listed] == ["First", "Hot DACH", "Catch all"]
    hot = listed[1]
    assert hot["conditions"] == {
        "campaign_ids": ["nextcloud-installation-2025"],
        "services": ["Nextcloud Installation"],
        "grades": ["A", "B"],
        "min_score": 70,
        "countries": ["DE", "AT"],
        "regions": ["US-CA"],
    }
    assert (hot["position"], hot["active"], hot["member_id"], hot["member_email"]) == (
        10,
        True,
        1,
        "anna@nexlink.website",
    )
    assert listed[2]["conditions"] == {}

    unknown = cli(
        ["rules", "add", "--name", "X", "--member-email", "nobody@nexlink.website"], env, tmp_path, code=1
    )
    assert unknown.stderr.strip() == "error: MEMBER_NOT_FOUND: No team member has this e-mail"
    dup = cli(
        ["rules", "add", "--name", "hot dach", "--member-email", "anna@nexlink.website"],
        env,
        tmp_path,
        code=1,
    )
    assert dup.stderr.strip() == "error: RULE_EXISTS: A routing rule with this name already exists"
    bad_grade = cli(
        ["rules", "add", "--name", "Y", "--member-email", "anna@nexlink.website", "--grade", "E"],
        env,
        tmp_path,
        code=2,
    )
    assert bad_grade.stderr.startswith("invalid grades.0:"), bad_grade.stderr
    bad_country = cli(
        ["rules", "add", "--name", "Z", "--member-email", "anna@nexlink.website", "--country", "DEU"],
        env,
        tmp_path,
        code=2,
    )
    assert (
        bad_country.stderr.strip()
        == "invalid countries.0: Country codes are 2 letters (ISO 3166-1 alpha-2), e.g. DE"
    )
    bad_score = cli(
        ["rules", "add", "--name", "Z", "--member-email", "anna@nexlink.website", "--min-score", "101"],
        env,
        tmp_path,
        code=2,
    )
    assert bad_score.stderr.startswith("invalid min_score:")
    assert len(json_lines(cli(["rules", "list"], env, tmp_path).stdout)) == 3
