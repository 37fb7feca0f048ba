"""Logs are JSON with a request id, and carry no personal data."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from leadflow.observability.logging import configure_logging
from tests.conftest import Harness, example_lead


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    yield stream
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_leadflow", False):
            root.removeHandler(handler)


async def test_json_logs_with_request_id_and_no_personal_data(
    harness: Harness, campaign: dict[str, Any], admin: dict[str, str], log_stream: io.StringIO
) -> None:
    email, phone, name = "Private.Person@secret-corp.example", "+1 415 555 0199", "Zebulon"
    body = example_lead(email=email, phone=phone, firstName=name)
    created = await harness.client.post("/v1/api/leads", json=body, headers={"X-Request-ID": "req-123"})
    assert created.headers["x-request-id"] == "req-123"
    lead_id = created.json()["lead_id"]
    await harness.client.post("/v1/api/leads", json=body)  # duplicate
    await harness.client.post("/v1/api/leads", json=example_lead(email="broken@@x"))  # invalid
    await harness.client.get(f"/v1/api/leads/{lead_id}", headers=admin)
    await harness.client.get("/v1/api/leads", headers=admin, params={"assigned_to": email})
    await harness.client.patch(f"/v1/api/leads/{lead_id}", headers=admin, json={"note": f"call {phone}"})

    output = log_stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    access = [line for line in lines if line.get("logger") == "leadflow.access"]
    assert len(access) >= 6
    assert all(len(line["request_id"]) >= 7 for line in access)
    assert any(line["request_id"] == "req-123" and line["status"] == 201 for line in access)
    for needle in (email, email.lower(), "Private.Person", "415 555 0199", "4155550199", name, "secret-corp"):
        assert needle not in output, needle


async def test_nul_bytes_in_urls_are_refused(harness: Harness, admin: dict[str, str]) -> None:
    for url in ("/v1/api/leads?assigned_to=a%00b", "/v1/api/campaigns/x%00y", "/v1/api/audit?actor=%00"):
        response = await harness.client.get(url, headers=admin)
        assert response.status_code == 400, url
        assert response.json()["error"] == "VALIDATION_ERROR"
