"""Run ``leadflow`` in-process: the same commands, output and exit codes as the installed entry point,
without a Python start-up and every import per invocation (seconds each on a loaded machine).

The entry point itself (``leadflow --help``, ``serve``/``worker`` as real processes, signals, crashes)
is proven by the subprocess tests that remain (tests/test_startup.py, tests/test_serve_workers.py ...).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import chdir
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from leadflow.cli import app


@dataclass(frozen=True)
class CliResult:
    """What ``subprocess.run(..., capture_output=True, text=True)`` gives, for the same assertions."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    exception: BaseException | None


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _invoke(args: list[str], env: dict[str, str | None], cwd: Path | None) -> CliResult:
    runner = CliRunner()
    if cwd is None:
        result = runner.invoke(app, args, env=env)
    else:
        with chdir(cwd):  # relative paths (var/, the development key file) as in a process started there
            result = runner.invoke(app, args, env=env)
    exception = result.exception
    if exception is not None and not isinstance(exception, SystemExit):
        # A real process would print a traceback and exit 1: keep the traceback for the assertion message.
        import traceback

        detail = "".join(traceback.format_exception(exception))
        return CliResult(args, 1, result.stdout, result.stderr + detail, exception)
    return CliResult(args, result.exit_code, result.stdout, result.stderr, exception)


def run_cli(
    args: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    *,
    extra_env: dict[str, Any] | None = None,
    code: int | None = 0,
) -> CliResult:
    """``leadflow ARGS`` with exactly ``env`` as its environment (like ``subprocess.run(env=...)``:
    variables not in it are unset for the call), or the current one plus ``extra_env``; in ``cwd``.
    Asserts the exit code unless ``code`` is None. Safe to call from async tests: the command runs its
    own event loop, so it then runs on a thread while the caller's loop waits."""
    overrides: dict[str, str | None] = {}
    if env is not None:
        overrides = {name: None for name in os.environ if name not in env}
        overrides.update(env)
    for name, value in (extra_env or {}).items():
        overrides[name] = None if value is None else str(value)
    if _loop_running():
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(_invoke, args, overrides, cwd).result()
    else:
        result = _invoke(args, overrides, cwd)
    if code is not None:
        assert result.returncode == code, (args, result.returncode, result.stdout + result.stderr)
    return result
