"""Admin endpoints for security: the audit log (read-only) and API tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from leadflow.errors import responses
from leadflow.kit.clock import UtcDateTime
from leadflow.kit.pagination import CursorParam, decode_cursor, encode_cursor
from leadflow.kit.state import ReadConn
from leadflow.security import audit
from leadflow.security.auth import require
from leadflow.security.tokens import Principal

router = APIRouter(prefix="/v1/api", tags=["security"])


class AuditEntryOut(BaseModel):
    id: int
    created_at: datetime
    actor: str = Field(examples=["sales@nexlink.website"])
    role: str | None = Field(examples=["sales"])
    channel: str = Field(examples=["api"], description="api | dashboard | cli | worker")
    action: str = Field(examples=["lead.read"])
    target_type: str | None = Field(examples=["lead"])
    target_id: str | None = Field(examples=["lead_abc123def456"])
    ip: str | None
    request_id: str | None
    details: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@router.get(
    "/audit",
    response_model=AuditPage,
    summary="Audit log",
    description=(
        "Every access to personal data and every change, newest first, through API, dashboard and CLI. "
        "Append-only: there is no endpoint that changes or deletes entries. Scope `admin`."
    ),
    responses=responses(400, 401, 403),
)
async def list_audit(
    _: Annotated[Principal, Depends(require("admin"))],
    conn: ReadConn,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=50, examples=["lead.read"])] = None,
    target_type: Annotated[str | None, Query(max_length=50)] = None,
    target_id: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[UtcDateTime | None, Query(description="Inclusive, ISO 8601")] = None,
    until: Annotated[UtcDateTime | None, Query(description="Exclusive, ISO 8601")] = None,
    cursor: CursorParam = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    flt = audit.AuditFilter(actor, action, target_type, target_id, _aware(since), _aware(until))
    rows = await audit.page(conn, flt, decode_cursor(cursor), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        items=[AuditEntryOut.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )
