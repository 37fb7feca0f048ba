"""``leadflow leads`` (export)."""

from __future__ import annotations

import typer

leads_app = typer.Typer(help="Work with leads (CSV export, the CRM fallback).", no_args_is_help=True)
