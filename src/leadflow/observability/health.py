"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import text

from leadflow.errors import json_response

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    database: str = Field(examples=["ok"])
    version: str = Field(examples=["0.1.0"])


@router.get(
    "/healthz",
    response_model=Health,
    summary="Health check",
    description="Public. 200 when the process is up and the database answers; 503 otherwise.",
    responses={503: {"model": Health, "description": "The database does not answer"}},
)
async def healthz(request: Request) -> Response:
    from leadflow import __version__

    database = "ok"
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        database = "unavailable"
    body = Health(status="ok" if database == "ok" else "degraded", database=database, version=__version__)
    return json_response(body.model_dump(), 200 if database == "ok" else 503)
