"""``leadflow privacy``: retention purge, export, erasure and consent changes from the command line
(audited)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

privacy_app = typer.Typer(help="Privacy rights and data retention.", no_args_is_help=True)


@privacy_app.command("purge")
def purge(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be purged")] = False,
) -> None:
    """Enforce the retention period now (RETENTION_DAYS, RETENTION_ACTION)."""
    from leadflow.cli import _run, _settings
    from leadflow.db import reclaim_space
    from leadflow.privacy.service import enforce_retention
    from leadflow.security.audit import CLI, record
    from leadflow.security.crypto import FieldCipher

    settings = _settings()

    async def work(engine: AsyncEngine) -> Any:
        cipher = FieldCipher(settings.encryption_keys, settings.blind_key)
        total = 0
        async with engine.begin() as conn:
            report = await enforce_retention(conn, cipher, settings, dry_run=dry_run)
            total += report.done
            if not dry_run:
                await record(
                    conn, CLI, "privacy.purge", None, None, {"done": report.done, "action": report.action}
                )
        while not dry_run and report.progressed:
            async with engine.begin() as conn:
                report = await enforce_retention(conn, cipher, settings, dry_run=False)
                total += report.done
        reclaimed = await reclaim_space(engine) if total else None
        return report, total, reclaimed

    report, total, reclaimed = _run(settings, work)
    verb = "would be" if dry_run else "were"
    count = report.matched if dry_run else total
    done = f"; space reclaimed: {reclaimed}" if reclaimed else ""
    typer.echo(f"{count} leads created before {report.cutoff:%Y-%m-%d} {verb} {report.action}d{done}")


@privacy_app.command("export")
def export_cmd(email: Annotated[str, typer.Option(help="The person's e-mail address")]) -> None:
    """Print everything stored about a person as JSON."""
    from leadflow.cli import _run, _settings
    from leadflow.privacy.service import export
    from leadflow.security.audit import CLI, record
    from leadflow.security.crypto import FieldCipher

    settings = _settings()

    async def work(engine: AsyncEngine) -> dict[str, Any]:
        async with engine.begin() as conn:
            data = await export(conn, FieldCipher(settings.encryption_keys, settings.blind_key), email)
            await record(
                conn,
                CLI,
                "privacy.export",
                "person",
                None,
                {"lead_ids": [x["lead_id"] for x in data["leads"]]},
            )
            return data

    typer.echo(json.dumps(_run(settings, work), indent=2))


@privacy_app.command("erase")
def erase_cmd(
    email: Annotated[str, typer.Option(help="The person's e-mail address")],
    reason: Annotated[str, typer.Option(help="Why (kept with the tombstone)")] = "data_subject_request",
) -> None:
    """Erase a person: delete their leads, queue deletion at connected tools, keep a tombstone."""
    from leadflow.cli import _run, _settings
    from leadflow.db import scrub_after_erase
    from leadflow.privacy.service import erase
    from leadflow.security.audit import CLI, record
    from leadflow.security.crypto import FieldCipher

    settings = _settings()

    async def work(engine: AsyncEngine) -> Any:
        async with engine.begin() as conn:
            cipher = FieldCipher(settings.encryption_keys, settings.blind_key)
            result = await erase(conn, cipher, settings, email, reason, None)
            await record(
                conn,
                CLI,
                "privacy.erase",
                "person",
                None,
                {
                    "leads_deleted": result.leads_deleted,
                    "remote": result.remote_deletions_queued,
                    "reason": reason,
                },
            )
        await scrub_after_erase(engine)
        return result

    result = _run(settings, work)
    remote = ", ".join(result.remote_deletions_queued) or "none configured"
    typer.echo(f"{result.leads_deleted} leads deleted; deletion queued at: {remote}")
    for name, note in sorted(result.notes.items()):
        typer.echo(f"not erased at {name}: {note}")


ACTIONS = {"withdraw": "withdraw", "grant": "grant", "do-not-sell": "do_not_sell", "allow-sale": "allow_sale"}


def _consent(email: str, action: str, note: str | None) -> None:
    from leadflow.cli import _run, _settings
    from leadflow.privacy import consent
    from leadflow.privacy.service import email_hash
    from leadflow.security.audit import CLI, record
    from leadflow.security.crypto import FieldCipher

    settings = _settings()

    async def work(engine: AsyncEngine) -> Any:
        async with engine.begin() as conn:
            cipher = FieldCipher(settings.encryption_keys, settings.blind_key)
            result = await consent.change(
                conn,
                cipher,
                settings,
                digest=email_hash(cipher, email),
                action=ACTIONS[action],  # type: ignore[arg-type]
                channel="cli",
                actor=CLI.name,
                email=email.strip().lower(),
                details={"note": note} if note else None,
            )
            await record(
                conn,
                CLI,
                f"privacy.consent.{ACTIONS[action]}",
                "person",
                None,
                {"lead_ids": result.lead_ids, "remote": result.remote_unsubscribes_queued},
            )
            return result

    result = _run(settings, work)
    remote = ", ".join(result.remote_unsubscribes_queued) or "none"
    typer.echo(f"{action}: {len(result.lead_ids)} leads changed; unsubscribe queued at: {remote}")


@privacy_app.command("consent")
def consent_cmd(
    email: Annotated[str, typer.Option(help="The person's e-mail address")],
    action: Annotated[str, typer.Option(help="withdraw | grant | do-not-sell | allow-sale")],
    note: Annotated[str | None, typer.Option(help="How the person asked (kept in the history)")] = None,
) -> None:
    """Record a consent change a person asked for, on all their leads (history, audit, connected tools)."""
    if action not in ACTIONS:
        typer.echo(f"unknown action {action!r}: choose one of {', '.join(ACTIONS)}", err=True)
        raise typer.Exit(2)
    _consent(email, action, note)


@privacy_app.command("withdraw")
def withdraw_cmd(
    email: Annotated[str, typer.Option(help="The person's e-mail address")],
    note: Annotated[str | None, typer.Option(help="How the person asked (kept in the history)")] = None,
) -> None:
    """Withdraw a person's consent: the e-mail sequence stops, e-mail tools unsubscribe them."""
    _consent(email, "withdraw", note)
