"""The ``leadflow`` command line."""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.core import TyperGroup

from leadflow.config import ConfigError, Settings, load_settings
from leadflow.db import create_engine
from leadflow.errors import ApiError
from leadflow.leads.cli import leads_app
from leadflow.migrations.runner import MigrationResult
from leadflow.observability.health import StartupError, preflight, reason, where
from leadflow.pipeline.cli import jobs_app, worker
from leadflow.privacy.cli import privacy_app
from leadflow.reports.cli import reports_app
from leadflow.routing.cli import members_app, rules_app
from leadflow.security.cli import keys_app, users_app


class OneLineErrors(TyperGroup):
    """Every command's last line of defence: a known start-up or database failure is one line on
    stderr and an exit code (2: configuration, 1: database), never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except StartupError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        except ConfigError as exc:
            typer.echo(f"configuration error: {exc}", err=True)
            raise typer.Exit(2) from exc
        except DBAPIError as exc:
            typer.echo(f"error: database: {reason(exc)}", err=True)
            raise typer.Exit(1) from exc
        except OSError as exc:  # e.g. `migrate` against a database that does not answer, an unwritable file
            typer.echo(f"error: {reason(exc)}", err=True)
            raise typer.Exit(1) from exc


app = typer.Typer(
    cls=OneLineErrors, help="Leadflow: capture, score and route campaign leads.", no_args_is_help=True
)
campaigns_app = typer.Typer(help="Manage campaigns.", no_args_is_help=True)
tokens_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(tokens_app, name="tokens")
app.add_typer(members_app, name="members")
app.add_typer(rules_app, name="rules")
app.add_typer(leads_app, name="leads")
app.add_typer(jobs_app, name="jobs")
app.add_typer(privacy_app, name="privacy")
app.add_typer(keys_app, name="keys")
app.add_typer(reports_app, name="reports")
app.add_typer(users_app, name="users")
app.command("worker")(worker)

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except (ValidationError, ConfigError) as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _run(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = create_engine(settings)
        try:
            await preflight(engine, settings)
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except ApiError as exc:  # ConfigError, StartupError, database errors: OneLineErrors
        typer.echo(f"error: {exc.error}: {exc.message}", err=True)
        raise typer.Exit(1) from exc


def _migrate(settings: Settings, target: str = "head") -> MigrationResult:
    from leadflow.migrations.runner import migrate

    if settings.ensure_key_file():
        typer.echo(
            f"generated a development encryption key in {settings.encryption_key_file} (mode 0600); "
            "set ENCRYPTION_KEY in production",
            err=True,
        )
    _ = settings.encryption_keys  # refuse a weak or missing key before touching the database
    path = settings.sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return migrate(settings.database_url, target)
    except (OSError, TimeoutError) as exc:  # the server does not answer (a failing migration is not this)
        raise StartupError(f"database unreachable: {where(settings)}: {reason(exc)}") from exc


def _migrate_or_exit(settings: Settings, target: str = "head") -> MigrationResult:
    from leadflow.migrations.runner import MigrationError

    try:
        return _migrate(settings, target)
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except MigrationError as exc:
        typer.echo(f"migration error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Target revision: head (default), a revision id such as 0004 (upgrade or downgrade "
            "to it: the rollback of a release), or base",
        ),
    ] = "head",
    show: Annotated[
        bool, typer.Option("--show", help="Only print the database's revision and the latest one")
    ] = False,
) -> None:
    """Create, upgrade or roll back the database schema, under a database-wide migration lock."""
    settings = _settings()
    if show:
        from leadflow.migrations.runner import revisions_async

        try:  # not through _run: an empty or older database is what this reports, not an error
            current, head = asyncio.run(revisions_async(settings.database_url))
        except Exception as exc:
            typer.echo(f"error: cannot read the database's revision: {type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"database at {current or 'base'}; latest {head}")
        return
    result = _migrate_or_exit(settings, to)
    if to == "head":
        typer.echo("database is at the latest schema")
    elif result.direction == "none":
        typer.echo(f"database is already at {result.after or 'base'}")
    else:
        typer.echo(f"database {result.direction}d from {result.before or 'base'} to {result.after or 'base'}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (PORT, default 8000)")] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run the in-process worker (run `leadflow worker`)")
    ] = False,
    ssl_certfile: Annotated[
        str | None, typer.Option(help="PEM certificate: serve HTTPS, TLS 1.3 only")
    ] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(help="PEM private key for --ssl-certfile")] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="API processes sharing the port (PostgreSQL/MySQL only; each has its own DB pool "
            "and, unless --no-worker, its own background worker)",
        ),
    ] = 1,
    migrate_first: Annotated[
        bool,
        typer.Option(
            "--migrate", help="Run `leadflow migrate` (under its lock) before serving (container entry)"
        ),
    ] = False,
) -> None:
    """Serve the API, its docs (/docs) and, unless --no-worker, one background worker."""
    import os

    if no_worker:
        os.environ["RUN_WORKER"] = "false"

    from leadflow.observability.logging import configure_logging

    settings = _settings()
    try:
        _ = settings.encryption_keys
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if bool(ssl_certfile) != bool(ssl_keyfile):
        typer.echo("error: --ssl-certfile and --ssl-keyfile go together", err=True)
        raise typer.Exit(2)
    if workers > 1 and settings.is_sqlite:
        typer.echo(
            "error: --workers needs PostgreSQL or MySQL: SQLite has one writer, which lives in one "
            "process (run one `leadflow serve`, it group-commits captures)",
            err=True,
        )
        raise typer.Exit(2)
    if migrate_first:
        # First, before anything else reads the database (it may be empty): the container's entry.
        configure_logging(settings.log_level)
        _migrate_or_exit(settings)
    _run(settings, lambda engine: _nothing())  # start-up checks: database reachable and migrated
    configure_logging(settings.log_level)
    from leadflow.security.headerlimits import apply_header_limits
    from leadflow.serving import ServeConfig, run

    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes answer on one port: each /metrics must add up all of them.
        import tempfile
        from pathlib import Path

        from leadflow.observability.metrics import prepare_multiprocess_dir

        prepare_multiprocess_dir(Path(tempfile.mkdtemp(prefix="leadflow-metrics-")))
    config = ServeConfig(
        "leadflow.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        access_log=False,
        log_config=None,
        proxy_headers=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        # SIGTERM: stop accepting, give requests in flight this long, then the lifespan's shutdown
        # (capture writer flushed, in-process worker stopped: it too gets this long, then gives back).
        # Rounded up, never None: uvicorn reads None as "wait for ever" (0 is "do not wait").
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
        leadflow_log_level=settings.log_level,
    )
    apply_header_limits(config, settings.max_header_bytes, settings.max_header_count)
    run(config)


async def _nothing() -> None:
    return None


async def _create_campaign(engine: AsyncEngine, data: dict[str, Any]) -> Any:
    from leadflow.campaigns import service
    from leadflow.campaigns.schemas import CampaignCreate
    from leadflow.security.audit import CLI, record

    body = CampaignCreate.model_validate(data)
    async with engine.begin() as conn:
        created = await service.create(conn, body)
        await record(conn, CLI, "campaign.create", "campaign", body.id)
        return created


@campaigns_app.command("create")
def campaigns_create(
    id: Annotated[str, typer.Option("--id", help="Campaign id (slug)")],
    name: Annotated[str, typer.Option(help="Display name")],
    type: Annotated[str, typer.Option("--type", help="service | product | consultation | assessment")],
    budget: Annotated[str | None, typer.Option(help="Budget, e.g. 1500.00")] = None,
    token: Annotated[
        bool, typer.Option("--token", help="Require an X-Campaign-Token (printed once)")
    ] = False,
    origin: Annotated[
        list[str] | None, typer.Option("--origin", help="Allowed browser origin (repeat)")
    ] = None,
    service_: Annotated[
        list[str] | None, typer.Option("--service", help="Service in the catalog (repeat)")
    ] = None,
    status: Annotated[str, typer.Option(help="draft | active | paused | completed")] = "active",
) -> None:
    """Create a campaign."""
    settings = _settings()
    data: dict[str, Any] = {
        "id": id,
        "name": name,
        "campaign_type": type,
        "status": status,
        "generate_token": token,
        "allowed_origins": origin or None,
        "services": service_ or None,
    }
    if budget is not None:
        data["budget"] = Decimal(budget)
    try:
        created = _run(settings, lambda engine: _create_campaign(engine, data))
    except ValidationError as exc:
        first = exc.errors()[0]
        typer.echo(f"invalid {'.'.join(map(str, first['loc']))}: {first['msg']}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"created campaign {created.id} ({created.status})")
    if created.token:
        typer.echo("campaign token (shown once; forms send it as X-Campaign-Token):")
        typer.echo(created.token)


@campaigns_app.command("list")
def campaigns_list() -> None:
    """List campaigns as JSON lines."""
    from leadflow.campaigns import repository, service

    settings = _settings()

    async def work(engine: AsyncEngine) -> list[Any]:
        async with engine.connect() as conn:
            return [service.to_out(r) for r in await repository.list_all(conn)]

    for campaign in _run(settings, work):
        typer.echo(campaign.model_dump_json(include={"id", "name", "campaign_type", "status", "has_token"}))


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help="admin | manager | sales | analyst | ingest | monitoring")],
    name: Annotated[str, typer.Option(help="What the token is for")],
    subject: Annotated[
        str | None, typer.Option(help="The person it stands for (e.g. a sales e-mail)")
    ] = None,
    expires_days: Annotated[int | None, typer.Option(help="Expire after this many days")] = None,
) -> None:
    """Create an API token; the token is printed on the last line (shown once)."""
    from datetime import timedelta

    from leadflow.security.tokens import create_token

    settings = _settings()

    async def work(engine: AsyncEngine) -> Any:
        from leadflow.security.audit import CLI, record

        async with engine.begin() as conn:
            created = await create_token(
                conn,
                name=name,
                role=role,
                subject=subject,
                expires_in=timedelta(days=expires_days) if expires_days else None,
            )
            await record(conn, CLI, "token.create", "token", str(created.id), {"role": role, "name": name})
            return created

    try:
        created = _run(settings, work)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"created {created.role} token #{created.id} '{created.name}' (store it now, it is not shown again):"
    )
    typer.echo(created.token)


@tokens_app.command("list")
def tokens_list() -> None:
    """List API tokens (never the secrets) as JSON lines."""
    from dataclasses import asdict

    from leadflow.security.repository import TokenRow, list_tokens

    settings = _settings()

    async def work(engine: AsyncEngine) -> list[TokenRow]:
        async with engine.connect() as conn:
            return await list_tokens(conn)

    import orjson

    for row in _run(settings, work):
        typer.echo(orjson.dumps(asdict(row)).decode())


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="Token id (from tokens list)")]) -> None:
    """Revoke a token; it stops working within seconds on every server."""
    from leadflow.kit.clock import utcnow
    from leadflow.security.audit import CLI, record
    from leadflow.security.repository import revoke_token

    settings = _settings()

    async def work(engine: AsyncEngine) -> bool:
        async with engine.begin() as conn:
            revoked = await revoke_token(conn, token_id, utcnow())
            if revoked:
                await record(conn, CLI, "token.revoke", "token", str(token_id))
            return revoked

    if not _run(settings, work):
        typer.echo(f"error: no active token #{token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"token #{token_id} revoked")


@app.command()
def demo(
    leads: Annotated[int, typer.Option(help="How many demo leads to create")] = 300,
    campaign_id: Annotated[str, typer.Option(help="The demo campaign's id")] = "nextcloud-installation-2025",
) -> None:
    """Seed a realistic demo campaign and a few hundred leads (idempotent for the campaign)."""
    from leadflow.demo import seed

    settings = _settings()
    created = _run(settings, lambda engine: seed(engine, settings, campaign_id, leads))
    typer.echo(f"demo campaign {campaign_id}: {created} leads added")


@app.command()
def quickstart(
    leads: Annotated[int, typer.Option(help="Demo leads to seed when the demo campaign is new")] = 300,
) -> None:
    """Migrate, seed the demo campaign, and on the first run create the first admin account (printed
    with its generated password) and an admin API token (last line); later runs create neither."""
    from leadflow.demo import seed
    from leadflow.security.audit import CLI, record
    from leadflow.security.tokens import active_token_exists, create_token
    from leadflow.security.users import ensure_first_admin

    settings = _settings()
    _migrate_or_exit(settings)

    async def work(engine: AsyncEngine) -> tuple[int, tuple[str, str] | None, str | None]:
        added = await seed(engine, settings, "nextcloud-installation-2025", leads)
        async with engine.begin() as conn:
            first = await ensure_first_admin(conn)
            account = None
            if first is not None:
                await record(conn, CLI, "user.create", "user", str(first[0].id), {"role": "admin"})
                account = (first[0].email, first[1])
            token = None
            if not await active_token_exists(conn, "quickstart"):
                token = (await create_token(conn, name="quickstart", role="admin")).token
        return added, account, token

    added, account, token = _run(settings, work)
    typer.echo(f"demo campaign nextcloud-installation-2025 ready ({added} leads added)")
    base = settings.public_base_url.rstrip("/")
    if account is not None:
        typer.echo(f"workspace: sign in at {base}/login as {account[0]} with the password (shown once):")
        typer.echo(f"  {account[1]}")
    else:
        typer.echo(
            f"workspace: sign in at {base}/login (`leadflow users reset-password --email E` for a link)"
        )
    if token is not None:
        typer.echo("admin API token (Authorization: Bearer ...; shown once):")
        typer.echo(token)
    else:
        typer.echo("an admin API token was printed by the first quickstart; another: leadflow tokens create")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
