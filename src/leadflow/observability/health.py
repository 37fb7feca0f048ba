"""Liveness and readiness, and the start-up checks of every process and command."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from leadflow.config import Settings
from leadflow.errors import json_response
from leadflow.kit.state import AppStateDep
from leadflow.observability.repository import database_answers

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    database: str = Field(examples=["ok"])
    version: str = Field(examples=["0.1.0"])
    spooled: int | None = Field(
        None,
        examples=[0],
        description="PostgreSQL/MySQL with the capture spool on: leads accepted (202) and not stored yet",
    )


@router.get(
    "/healthz",
    response_model=Health,
    summary="Health check",
    description="Public. 200 when the process is up and the database answers. When the database does "
    "not answer: 200 with `status: degraded` while the capture spool accepts leads (PostgreSQL/MySQL), "
    "so that a load balancer keeps sending captures; 503 otherwise.",
    responses={503: {"model": Health, "description": "The database does not answer and nothing can spool"}},
)
async def healthz(state: AppStateDep) -> Response:
    from leadflow import __version__

    database = "ok" if await database_answers(state.engine) else "unavailable"
    spool = state.writer.spool
    body = Health(
        status="ok" if database == "ok" else "degraded",
        database=database,
        version=__version__,
        spooled=spool.pending if spool is not None else None,
    )
    serving = database == "ok" or (spool is not None and spool.accepting())
    return json_response(body.model_dump(exclude_none=True), 200 if serving else 503)


# --- start-up checks (``leadflow serve``, ``leadflow worker`` and every command that uses the database) --


class StartupError(RuntimeError):
    """The process cannot start; the message is one line for the operator (no traceback)."""


def where(settings: Settings) -> str:
    """The database named for an operator, without credentials."""
    url = make_url(settings.database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"sqlite {url.database or ':memory:'}"
    return f"{backend} at {url.host or 'localhost'}:{url.port or 'default port'}/{url.database or ''}"


def reason(exc: BaseException) -> str:
    """The driver's own first line (SQLAlchemy's wrapper adds SQL and links), without credentials."""
    cause: BaseException = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    first = lines[0][:200] if lines else ""
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


async def preflight(engine: AsyncEngine, settings: Settings, wait_seconds: float = 10.0) -> None:
    """Refuse to start, in one line, without a usable key, a reachable database and the schema this
    version needs."""
    from leadflow.migrations.runner import current_revisions, head_revisions, known_revision

    _ = settings.encryption_keys  # ConfigError: missing or weak key
    try:
        async with asyncio.timeout(wait_seconds):
            async with engine.connect() as conn:
                current = await conn.run_sync(current_revisions)
    except TimeoutError as exc:
        raise StartupError(
            f"database unreachable: {where(settings)} did not answer within {wait_seconds:g} s"
        ) from exc
    except Exception as exc:
        raise StartupError(f"database unreachable: {where(settings)}: {reason(exc)}") from exc
    expected = head_revisions()
    if current == expected:
        return
    needs = ", ".join(sorted(expected))
    if not current:
        raise StartupError(
            f"database schema not migrated ({where(settings)} is empty): run `leadflow migrate`"
        )
    at = ", ".join(sorted(current))
    if all(known_revision(r) for r in current):
        raise StartupError(
            f"database schema not migrated (at {at}, this version needs {needs}): run `leadflow migrate`"
        )
    raise StartupError(
        f"database schema {at} is newer than this version of Leadflow knows ({needs}): run a newer version"
    )
