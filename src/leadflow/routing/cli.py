"""``leadflow members`` and ``leadflow rules``."""

from __future__ import annotations

import typer

members_app = typer.Typer(help="Manage the team members who receive leads.", no_args_is_help=True)
rules_app = typer.Typer(help="Manage ordered routing rules.", no_args_is_help=True)
