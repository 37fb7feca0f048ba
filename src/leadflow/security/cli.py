"""``leadflow keys`` (generate, rotate, re-encrypt) and ``leadflow users`` (staff accounts)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.config import Settings

if TYPE_CHECKING:
    from leadflow.security.repository import UserRow

keys_app = typer.Typer(help="Encryption keys: generate, rotate, re-encrypt.", no_args_is_help=True)


@keys_app.command("generate")
def generate() -> None:
    """Print a new 32-byte key in standard base64 (for ENCRYPTION_KEY)."""
    from leadflow.config import generate_key

    typer.echo(generate_key())


@keys_app.command("rotate")
def rotate_cmd(
    reencrypt: Annotated[
        bool, typer.Option(help="Re-encrypt every row now (else: `keys reencrypt` later)")
    ] = True,
) -> None:
    """Make a new key primary; old ciphertexts stay readable; re-encrypt rows to the new key."""
    from leadflow.cli import _run, _settings
    from leadflow.config import load_settings
    from leadflow.security.audit import CLI, record_now
    from leadflow.security.crypto import FieldCipher
    from leadflow.security.rotation import reencrypt_all, rotate

    settings = _settings()
    result = rotate(settings)
    if not result.key_file_updated:
        old = ",".join(
            [settings.encryption_key.get_secret_value()]  # type: ignore[union-attr]
            + [k.get_secret_value() for k in settings.encryption_old_keys]
        )
        typer.echo("Apply these settings to every API server and worker, restart them, then run")
        typer.echo("`leadflow keys reencrypt` (it is resumable):")
        typer.echo(f"ENCRYPTION_KEY={result.new_key}")
        typer.echo(f"ENCRYPTION_OLD_KEYS={old}")
        typer.echo(f"BLIND_INDEX_KEY={result.blind_index_key}")
        return
    typer.echo(f"new primary key written to {settings.encryption_key_file}; old keys kept for reading")
    fresh = load_settings()

    async def work(engine: AsyncEngine) -> int:
        await record_now(engine, CLI, "keys.rotate", None, None, None)
        if not reencrypt:
            return 0
        return await reencrypt_all(engine, FieldCipher(fresh.encryption_keys, fresh.blind_key))

    typer.echo(f"{_run(fresh, work)} rows re-encrypted with the new key")


@keys_app.command("reencrypt")
def reencrypt_cmd(
    batch: Annotated[int, typer.Option(help="Rows per transaction")] = 500,
    max_batches: Annotated[
        int | None, typer.Option(help="Stop after this many batches (resume later)")
    ] = None,
) -> None:
    """Move every encrypted value to the primary key (resumable)."""
    from leadflow.cli import _run, _settings
    from leadflow.security.crypto import FieldCipher
    from leadflow.security.rotation import reencrypt_all

    settings = _settings()

    async def work(engine: AsyncEngine) -> int:
        return await reencrypt_all(
            engine, FieldCipher(settings.encryption_keys, settings.blind_key), batch, max_batches
        )

    typer.echo(f"{_run(settings, work)} rows re-encrypted")


# -- staff accounts of the workspace -------------------------------------------------------------------
users_app = typer.Typer(help="Staff accounts of the workspace (sign-in at /login).", no_args_is_help=True)
T = TypeVar("T")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _users_run(work: Callable[[Settings, AsyncEngine], Awaitable[T]]) -> tuple[Settings, T]:
    """Run ``work`` against the database; a refused input (ValueError, a weak password) exits 2."""
    from leadflow.cli import _run, _settings

    settings = _settings()
    try:
        return settings, _run(settings, lambda engine: work(settings, engine))
    except ValueError as exc:  # PasswordRejected too
        raise _fail(str(exc)) from exc


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Sign-in e-mail address")],
    name: Annotated[str, typer.Option(help="Display name")],
    role: Annotated[str, typer.Option(help="admin | manager | sales | analyst")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (required)")
    ] = False,
    member_email: Annotated[
        str | None,
        typer.Option(help="The routing team member this user is (a salesperson's own leads)"),
    ] = None,
) -> None:
    """Create a staff account; the password is read from stdin (at least 12 characters, not a common one)."""
    import sys

    from leadflow.security import repository, users
    from leadflow.security.audit import CLI, record

    password = sys.stdin.read().rstrip("\r\n") if password_stdin else None

    async def work(_: Settings, engine: AsyncEngine) -> repository.UserRow:
        if password is None:
            raise ValueError("pass the password on standard input with --password-stdin")
        async with engine.begin() as conn:
            created = await users.create_user(
                conn, email=email, name=name, role=role, password=password, member_email=member_email
            )
            await record(conn, CLI, "user.create", "user", str(created.id), {"role": role})
            return created

    _, created = _users_run(work)
    typer.echo(f"created {created.role} user #{created.id} {created.email}")


@users_app.command("list")
def users_list() -> None:
    """List staff accounts as JSON lines (never a password hash)."""
    import dataclasses

    import orjson

    from leadflow.security import repository

    async def work(_: Settings, engine: AsyncEngine) -> list[repository.UserRow]:
        async with engine.connect() as conn:
            return list(await repository.list_users(conn))

    for user in _users_run(work)[1]:
        typer.echo(orjson.dumps(dataclasses.asdict(user)).decode())


@users_app.command("deactivate")
def users_deactivate(email: Annotated[str, typer.Option(help="The user's e-mail address")]) -> None:
    """Switch an account off: it cannot sign in, and its open sessions end at once."""
    from leadflow.security import repository, users
    from leadflow.security.audit import CLI, record

    async def work(_: Settings, engine: AsyncEngine) -> repository.UserRow | None:
        async with engine.begin() as conn:
            user = await users.deactivate(conn, email)
            if user is not None:
                await record(conn, CLI, "user.deactivate", "user", str(user.id))
            return user

    _, user = _users_run(work)
    if user is None:
        raise _fail(f"no user with the e-mail {email}", 1)
    typer.echo(f"user #{user.id} {user.email} deactivated; their sessions have ended")


@users_app.command("reset-password")
def users_reset_password(email: Annotated[str, typer.Option(help="The user's e-mail address")]) -> None:
    """Print a one-time password-reset link (expires after PASSWORD_RESET_MINUTES) to pass on; with a
    mail transport configured (SMTP_HOST or SendGrid) it is e-mailed to the user as well."""
    from datetime import timedelta

    from leadflow.security import repository, users
    from leadflow.security.audit import CLI, record

    async def work(settings: Settings, engine: AsyncEngine) -> tuple[str, str | None] | None:
        async with engine.begin() as conn:
            user = await repository.user_by_email(conn, users.normalise_email(email))
            if user is None or not user.active:
                return None
            token = await users.create_reset(conn, user, timedelta(minutes=settings.password_reset_minutes))
            await record(conn, CLI, "user.reset_link", "user", str(user.id))
        link = users.reset_link(settings.public_base_url, token)
        return link, await _mail_reset_link(settings, user, link)

    settings, outcome = _users_run(work)
    if outcome is None:
        raise _fail(f"no active user with the e-mail {email}", 1)
    link, mailed = outcome
    minutes = int(settings.password_reset_minutes)
    if mailed is not None:
        typer.echo(mailed, err=True)
    typer.echo(f"one-time reset link for {email.strip().lower()} (works once, for {minutes} minutes):")
    typer.echo(link)


async def _mail_reset_link(settings: Settings, user: UserRow, link: str) -> str | None:
    """E-mail the link when a transport is configured: what happened, or None without a transport."""
    import html

    import httpx

    from leadflow.integrations.base import DeliveryError
    from leadflow.integrations.mailer import Mailer, OutgoingEmail

    async with httpx.AsyncClient(timeout=settings.http_timeout_seconds) as http:
        mailer = Mailer(settings, http)
        if not mailer.configured():
            return None
        minutes = int(settings.password_reset_minutes)
        paragraphs = (
            f"Hello {user.name},",
            "an administrator asked for a new Leadflow password for you. "
            f"Open this link within {minutes} minutes to choose one (it works once):",
        )
        message = OutgoingEmail(
            to=user.email,
            to_name=user.name,
            subject="Choose a new Leadflow password",
            text="\n\n".join((*paragraphs, link)) + "\n",
            html="".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
            + f'<p><a href="{html.escape(link)}">{html.escape(link)}</a></p>',
            dedup_key=f"password-reset:{user.id}:{link[-12:]}",
            category="leadflow-account",
        )
        try:
            await mailer.send(message)
        except DeliveryError as exc:
            return f"could not e-mail the link ({type(exc).__name__}); pass it on yourself"
        return f"e-mailed the link to {user.email}"
