"""Fixtures for the CRM / marketing / analytics / webhook connector tests (real HTTP to local fakes)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow.config import Settings
from leadflow.integrations.base import DeliveryContext
from tests.conftest import shared_dir

VENDOR_PREFIXES = ("HUBSPOT_", "SALESFORCE_", "MAILCHIMP_", "SENDGRID_", "GA4_", "WEBHOOK_")


@pytest.fixture(autouse=True)
def _no_vendor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from each test alone, never from credentials in the developer's environment."""
    for name in list(os.environ):
        if name.upper().startswith(VENDOR_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def contracts() -> Path:
    """``<LEADFLOW_SHARED_DIR>/contracts``; tests that need a vendor contract skip without it."""
    path = shared_dir() / "contracts"
    if not path.is_dir():
        pytest.skip(f"vendor contracts not found at {path} (set LEADFLOW_SHARED_DIR)")
    return path


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def vendor_settings(**values: Any) -> Settings:
    return Settings(leadflow_env="test", **values)


@pytest.fixture
def make_ctx(http: httpx.AsyncClient) -> Callable[..., DeliveryContext]:
    def make(
        settings: Settings | None = None, dedup_key: str = "deliver:test:1", attempt: int = 1
    ) -> DeliveryContext:
        return DeliveryContext(
            settings=settings or vendor_settings(), http=http, job_id=1, attempt=attempt, dedup_key=dedup_key
        )

    return make
