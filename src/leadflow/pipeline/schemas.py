"""Job bodies for the admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class JobAttemptOut(BaseModel):
    attempt: int
    worker: str | None
    outcome: str = Field(examples=["retry"], description="success | retry | dead | permanent | lost_lease")
    status_code: int | None = Field(examples=[429])
    duration_ms: int
    error: str | None
    response_excerpt: str | None
    started_at: datetime


class JobOut(BaseModel):
    id: int
    kind: str = Field(examples=["deliver"])
    connector: str | None = Field(examples=["hubspot"])
    lead_id: str | None = Field(description="Public id of the lead, when the job is about one")
    status: str = Field(examples=["dead"], description="pending | running | done | dead")
    attempts: int
    max_attempts: int
    run_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any]


class JobDetail(JobOut):
    history: list[JobAttemptOut]


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class RetryResult(BaseModel):
    requeued: int = Field(examples=[3])
