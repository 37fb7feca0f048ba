"""``leadflow leads`` (export, update, import)."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

leads_app = typer.Typer(
    help="Work with leads (CSV export, the CRM fallback, corrections, CSV import).", no_args_is_help=True
)


def _open_private(path: Path) -> tuple[TextIO, bool]:
    """The output, and whether it is a regular file (created or truncated, owner-only: it holds
    personal data). A device or pipe (``/dev/stdout``, a FIFO) is written as it is."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    regular = stat.S_ISREG(os.fstat(fd).st_mode)
    if regular:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode on O_TRUNC: tighten it
    return os.fdopen(fd, "w", newline="", encoding="utf-8"), regular


@leads_app.command("export")
def export(
    campaign: Annotated[str | None, typer.Option("--campaign", help="Only this campaign id")] = None,
    since: Annotated[
        str | None, typer.Option(help="Created on/after: YYYY-MM-DD (UTC day) or ISO datetime")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Created up to: YYYY-MM-DD (inclusive day) or ISO datetime (exclusive)")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="CSV file to write, or - for stdout")] = "-",
) -> None:
    """Export leads as CSV (decrypted; spreadsheet-safe), newest first. The count goes to stderr."""
    from leadflow.cli import _run, _settings
    from leadflow.integrations.csv_export import ExportFilter, export_csv, parse_bound
    from leadflow.security.crypto import DecryptionError

    try:
        flt = ExportFilter(
            campaign_id=campaign,
            since=parse_bound(since, end=False) if since else None,
            until=parse_bound(until, end=True) if until else None,
        )
    except ValueError as exc:
        typer.echo(f"invalid date: {exc} (use YYYY-MM-DD or an ISO datetime)", err=True)
        raise typer.Exit(2) from exc
    if flt.since and flt.until and flt.since >= flt.until:
        typer.echo("--since must be before --until", err=True)
        raise typer.Exit(2)
    settings = _settings()

    def write(out: TextIO, destination: str) -> int:
        try:
            return _run(settings, lambda engine: export_csv(engine, settings, out, flt, destination))
        except DecryptionError as exc:
            typer.echo(
                f"cannot decrypt the leads ({exc}): is ENCRYPTION_KEY the key they were written with?",
                err=True,
            )
            raise typer.Exit(1) from exc

    if output == "-":
        count = write(sys.stdout, "stdout")
    else:
        path = Path(output)
        try:
            handle, regular = _open_private(path)
        except OSError as exc:
            typer.echo(f"cannot write {path}: {exc.strerror}", err=True)
            raise typer.Exit(1) from exc
        try:
            with handle:
                count = write(handle, str(path))
        except BaseException:
            if regular:
                with contextlib.suppress(OSError):
                    path.unlink()  # no half-written export of personal data left behind
            raise
    typer.echo(f"exported {count} leads", err=True)


@leads_app.command("update")
def update(
    lead_id: Annotated[str, typer.Argument(help="The public lead id (lead_…)")],
    first_name: Annotated[str | None, typer.Option("--first-name", help="Corrected first name")] = None,
    last_name: Annotated[str | None, typer.Option("--last-name", help="Corrected last name")] = None,
    email: Annotated[str | None, typer.Option(help="Corrected e-mail address")] = None,
    phone: Annotated[str | None, typer.Option(help="Corrected phone number ('' clears it)")] = None,
    company: Annotated[str | None, typer.Option(help="Corrected company ('' clears it)")] = None,
    do_not_sell: Annotated[
        bool | None,
        typer.Option("--do-not-sell/--allow-sale", help="The person's opt-out of sale/sharing (CCPA)"),
    ] = None,
) -> None:
    """Correct a lead's contact data (rectification) or record a do-not-sell choice; audited."""
    from pydantic import ValidationError

    from leadflow.cli import _run, _settings
    from leadflow.kit.ids import LEAD_ID_RE
    from leadflow.leads import service
    from leadflow.leads.schemas import LeadUpdate
    from leadflow.security.audit import CLI
    from leadflow.security.crypto import FieldCipher

    given = {
        "first_name": first_name,
        "last_name": last_name,
        "email": email,
        "phone": phone,
        "company": company,
        "do_not_sell": do_not_sell,
    }
    # An empty --phone/--company clears the field; options not given are not changed.
    changes = {
        k: (None if v == "" and k in ("phone", "company") else v) for k, v in given.items() if v is not None
    }
    if not changes:
        typer.echo("nothing to change: give at least one option", err=True)
        raise typer.Exit(2)
    if not LEAD_ID_RE.match(lead_id):
        typer.echo(f"not a lead id: {lead_id}", err=True)
        raise typer.Exit(2)
    try:
        body = LeadUpdate.model_validate(changes)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        typer.echo(f"invalid value: {problems}", err=True)
        raise typer.Exit(2) from exc
    settings = _settings()

    async def work(engine: AsyncEngine) -> list[str]:
        async with engine.begin() as conn:
            cipher = FieldCipher(settings.encryption_keys, settings.blind_key)
            return await service.update(conn, cipher, lead_id, body, CLI, settings=settings)

    crm = _run(settings, work)
    changed = ", ".join(sorted(body.model_fields_set))
    typer.echo(f"{lead_id} updated ({changed}); CRM update queued at: {', '.join(crm) or 'none'}")


@leads_app.command("import")
def import_csv(
    file: Annotated[
        Path, typer.Argument(help="CSV file with a header row (UTF-8)", exists=True, dir_okay=False)
    ],
    campaign: Annotated[str, typer.Option("--campaign", help="The campaign the leads belong to")],
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map", help="FIELD=COLUMN (header name), repeatable; default: guessed from the header"
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only check the rows, import nothing")] = False,
) -> None:
    """Import leads from a CSV file through the capture core (validation, de-duplication, scoring, the
    pipeline); rate limits aside. Rows are keyed by the file's digest and line: importing the same file
    again creates nothing twice. Invalid rows are listed and skipped (exit code 1 when there were any)."""
    from leadflow.cli import _run, _settings
    from leadflow.leads import entry
    from leadflow.leads.capture import CaptureWriter
    from leadflow.scoring.rules import normalise_catalog
    from leadflow.security.audit import CLI
    from leadflow.security.crypto import FieldCipher

    try:
        parsed = entry.CsvFile.parse(file.read_bytes())
        mapping = _mapping(parsed, map_ or [])
    except entry.EntryRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    settings = _settings()
    if dry_run:
        checked = entry.check_rows(parsed, mapping, campaign, settings.default_phone_region)
        bad = [(line, c) for line, c in checked if isinstance(c, entry.EntryRefused)]
        for line, problem in bad:
            typer.echo(f"line {line}: {problem}")
        typer.echo(f"{len(checked) - len(bad)} rows can be imported, {len(bad)} have errors")
        raise typer.Exit(1 if bad else 0)

    async def work(engine: AsyncEngine) -> entry.ImportReport:
        from leadflow.campaigns import repository as campaigns_repo
        from leadflow.campaigns.service import to_capture

        async with engine.connect() as conn:
            row = await campaigns_repo.get(conn, campaign)
        found = entry.check_campaign(to_capture(row) if row is not None else None)
        writer = CaptureWriter(
            engine,
            dedup_window=timedelta(hours=settings.dedup_window_hours),
            qualifying_grades=settings.qualifying_grades,
        )
        try:
            core = entry.Core(
                engine,
                writer.submit,
                FieldCipher(settings.encryption_keys, settings.blind_key),
                normalise_catalog(settings.service_catalog),
                settings.default_phone_region,
            )
            return await entry.import_file(core, parsed, mapping, found, actor=CLI)
        finally:
            await writer.close()

    try:
        report = _run(settings, work)
    except entry.EntryRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for result in report.rows:
        if result.kind == "invalid":
            typer.echo(f"line {result.line}: " + "; ".join(f"{k}: {v}" for k, v in result.errors.items()))
        elif result.kind in ("duplicate", "key_conflict"):
            typer.echo(f"line {result.line}: {result.kind} ({result.lead_id})")
    typer.echo(
        f"{report.count('created', 'spooled')} created, {report.count('replay')} already imported, "
        f"{report.count('duplicate')} duplicates, {report.count('invalid', 'key_conflict')} not imported"
    )
    if report.count("invalid", "key_conflict"):
        raise typer.Exit(1)


def _mapping(parsed: Any, pairs: list[str]) -> dict[str, int]:
    """``--map email=E-mail`` options as field -> column index (none given: guessed from the header)."""
    from leadflow.leads import entry

    if not pairs:
        return dict(parsed.guess_mapping())
    found: dict[str, int] = {}
    for pair in pairs:
        name, _, column = pair.partition("=")
        if name not in entry.FIELD_NAMES or column not in parsed.header:
            raise entry.EntryRefused(
                {"map": f"{pair}: FIELD=COLUMN with a field of {', '.join(entry.FIELD_NAMES)}"}
            )
        found[name] = parsed.header.index(column)
    return found


@leads_app.command("index-phones")
def index_phones(
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Leads per transaction")] = 500,
) -> None:
    """Give leads stored before the phone blind index theirs (so the workspace finds them by phone).
    Safe to run again and while the API runs: only leads without one are touched."""
    from leadflow.cli import _run, _settings
    from leadflow.leads import service
    from leadflow.security.crypto import FieldCipher

    settings = _settings()
    cipher = FieldCipher(settings.encryption_keys, settings.blind_key)

    async def work(engine: AsyncEngine) -> int:
        done, after = 0, 0
        while True:
            async with engine.begin() as conn:
                last = await service.index_phones(conn, cipher, after, batch)
            if last is None:
                return done
            done, after = done + 1, last

    batches = _run(settings, work)
    typer.echo(f"phone numbers indexed ({batches} batches of up to {batch} leads)")
