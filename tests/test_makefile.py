"""`make run` installs only the runtime dependencies, `make test` the dev extra too; each once (dry runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(target: str, venv: Path) -> str:
    result = subprocess.run(
        ["make", "-n", "-C", str(REPO), f"VENV={venv}", target],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def _installs(output: str) -> list[str]:
    return [line for line in output.splitlines() if " install " in line]


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    path = tmp_path / "venv"
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").touch()  # the virtual environment exists; what is installed is the stamps' say
    return path


def _stamp(venv: Path, name: str) -> None:
    stamp = venv / name
    stamp.touch()
    later = (REPO / "pyproject.toml").stat().st_mtime + 10
    os.utime(stamp, (later, later))


def test_run_installs_only_the_runtime_dependencies(venv: Path) -> None:
    installs = _installs(_dry_run("run", venv))
    assert len(installs) == 1 and installs[0].endswith("install --quiet -e ."), installs
    assert "[dev]" not in _dry_run("run", venv)


def test_test_installs_the_dev_extra(venv: Path) -> None:
    output = _dry_run("test", venv)
    installs = _installs(output)
    assert len(installs) == 1 and installs[0].endswith("install --quiet -e '.[dev]'"), installs
    assert f"touch {venv}/.runtime-stamp {venv}/.dev-stamp" in output  # it includes the runtime set


def test_after_run_test_adds_the_dev_extra_and_run_installs_nothing(venv: Path) -> None:
    _stamp(venv, ".runtime-stamp")
    assert _installs(_dry_run("run", venv)) == []
    assert [line.split()[-1] for line in _installs(_dry_run("test", venv))] == ["'.[dev]'"]


def test_after_test_neither_installs_again(venv: Path) -> None:
    _stamp(venv, ".runtime-stamp")  # what the dev install touches with its own stamp
    _stamp(venv, ".dev-stamp")
    assert _installs(_dry_run("run", venv)) == []
    assert _installs(_dry_run("test", venv)) == []


def test_a_new_virtual_environment_is_created_once(tmp_path: Path) -> None:
    output = _dry_run("test", tmp_path / "fresh")
    assert output.count(" -m venv ") == 1
