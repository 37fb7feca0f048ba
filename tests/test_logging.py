"""Logs are JSON with a request id, and carry no personal data."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from leadflow.observability import logging as log_module
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


async def test_access_line_written_directly_is_the_line_logging_writes(
    harness: Harness, campaign: dict[str, Any], log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With our handler alone on the root logger (as served), the access line skips ``logging``
    and the structlog chain: same keys, order and values as the line they render."""
    root = logging.getLogger()
    others = [h for h in root.handlers if not getattr(h, "_leadflow", False)]
    for handler in others:  # the suite's recorder: with it there, every line goes through logging
        root.removeHandler(handler)
    through_logging: list[Any] = []
    real = log_module.access_log
    monkeypatch.setattr(log_module, "access_log", _Spy(real, through_logging))
    try:
        email = "Direct.Line@secret-corp.example"
        response = await harness.client.post(
            "/v1/api/leads", json=example_lead(email=email), headers={"X-Request-ID": "direct-1"}
        )
        assert response.status_code == 201
    finally:
        for handler in others:
            root.addHandler(handler)
    assert through_logging == []  # written directly
    response = await harness.client.post(
        "/v1/api/leads",
        json=example_lead(email="through.logging@secret-corp.example"),
        headers={"X-Request-ID": "logged-1"},
    )
    assert response.status_code == 201
    assert len(through_logging) == 1  # another handler present: through logging
    output = log_stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    direct = next(line for line in lines if line.get("request_id") == "direct-1")
    logged = next(line for line in lines if line.get("request_id") == "logged-1")
    assert list(direct) == list(logged)
    assert direct["logger"] == "leadflow.access" and direct["level"] == "info"
    assert direct["event"] == "request" and direct["status"] == 201
    assert direct["path"] == logged["path"] == "/v1/api/leads"
    assert direct["timestamp"].endswith("Z")
    assert email not in output and "secret-corp" not in output


class _Spy:
    def __init__(self, real: Any, calls: list[Any]) -> None:
        self.real, self.calls = real, calls

    def info(self, event: str, **kw: Any) -> None:
        self.calls.append(kw)
        self.real.info(event, **kw)


def test_fastapi_opentelemetry_is_off_unless_the_environment_asks_for_it() -> None:
    """FastAPI's per-request OpenTelemetry check is switched off when nothing configures OpenTelemetry."""
    import inspect

    from fastapi import FastAPI

    from leadflow.app import fastapi_telemetry

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        assert fastapi_telemetry({}) == {}  # an older FastAPI: nothing to switch
        return
    off = fastapi_telemetry({"PATH": "/usr/bin", "LEADFLOW_ENV": "production"})
    assert off == {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_PYTHON_TRACER_PROVIDER", "FASTAPI_OTEL_AUTO_CONFIGURE"):
        assert fastapi_telemetry({key: "x"}) == {}, key  # FastAPI's defaults
    app = FastAPI(**off)
    assert app.openapi()["info"]["title"] == "FastAPI"  # accepted by this FastAPI
