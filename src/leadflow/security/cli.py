"""``leadflow keys``: generate, rotate, re-encrypt."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

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
