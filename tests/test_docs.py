"""The docs stay true: checks of statements in README.md and docs/ against the code."""

from __future__ import annotations

import re
from pathlib import Path

from leadflow.config import Settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
ARCHITECTURE = (REPO / "docs" / "architecture.md").read_text()
DEPLOYMENT = (REPO / "docs" / "deployment.md").read_text()
SOURCE = "\n".join(p.read_text() for p in (REPO / "src" / "leadflow").rglob("*.py"))


def test_every_setting_is_documented() -> None:
    documented = README + DEPLOYMENT
    missing = [
        name
        for name in Settings.env_names()
        if name not in documented and not name.endswith("_BASE_URL")  # `*_BASE_URL` in README
    ]
    assert not missing, f"settings missing from README.md / deployment.md: {missing}"


def test_the_migration_range_is_the_one_shipped() -> None:
    versions = sorted(p.name[:4] for p in (REPO / "src/leadflow/migrations/versions").glob("[0-9]*.py"))
    match = re.search(r"Alembic migrations `(\d{4})`–`(\d{4})`", ARCHITECTURE)
    assert match is not None
    assert (match.group(1), match.group(2)) == (versions[0], versions[-1])


def test_logged_events_named_in_deployment_exist() -> None:
    section = DEPLOYMENT.split("Events worth alerting on:", 1)[1].split("\n\n", 1)[0]
    events = re.findall(r"`([a-z_]+)`", section)
    assert len(events) > 10
    missing = [e for e in events if f'"{e}"' not in SOURCE]
    assert not missing, f"events named in deployment.md but never logged: {missing}"
