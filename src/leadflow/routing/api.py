"""Team members and routing rules: the admin API."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/api", tags=["routing"])
