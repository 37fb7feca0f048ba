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
async def healthz(request: Request) -> Response:
    from leadflow import __version__

    database = "ok"
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        database = "unavailable"
    spool = request.app.state.writer.spool
    body = Health(
        status="ok" if database == "ok" else "degraded",
        database=database,
        version=__version__,
        spooled=spool.pending if spool is not None else None,
    )
    serving = database == "ok" or (spool is not None and spool.accepting())
    return json_response(body.model_dump(exclude_none=True), 200 if serving else 503)
