"""POST /v1/api/leads answers the same through CaptureFastPath as through the FastAPI route."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.kit.state import state_of
from leadflow.security.tokens import create_token
from tests.conftest import EXAMPLE_LEAD

URL = "/v1/api/leads"


def _body(i: int, **fields: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE_LEAD)
    body["contact"]["email"] = f"fast{i}@acme-corp.com"
    body.update(fields)
    return body


def _cases(ingest: str) -> list[tuple[str, dict[str, Any]]]:
    raw = {"Content-Type": "application/json"}
    return [
        ("created", {"json": _body(1)}),
        ("duplicate", {"json": _body(1)}),
        ("duplicate with origin", {"json": _body(1), "headers": {"Origin": "https://x.example"}}),
        ("key too long", {"json": _body(2), "headers": {"Idempotency-Key": "k" * 256}}),
        ("key", {"json": _body(3), "headers": {"Idempotency-Key": "k" * 255}}),
        ("key replayed", {"json": _body(3), "headers": {"Idempotency-Key": "k" * 255}}),
        ("key blank", {"json": _body(4), "headers": {"Idempotency-Key": "   "}}),
        ("key reused", {"json": _body(5), "headers": {"Idempotency-Key": "k" * 255}}),
        ("no content type", {"content": json.dumps(_body(6)).encode(), "headers": {"Content-Type": ""}}),
        ("text", {"content": json.dumps(_body(6)).encode(), "headers": {"Content-Type": "text/plain"}}),
        (
            "+json",
            {"content": json.dumps(_body(7)).encode(), "headers": {"Content-Type": "application/x+json"}},
        ),
        ("bad json", {"content": b"{", "headers": raw}),
        ("array", {"content": b"[]", "headers": raw}),
        ("empty", {"content": b"", "headers": raw}),
        ("declared too large", {"content": b"{}", "headers": {**raw, "Content-Length": "99999999"}}),
        ("too large", {"content": b"{" + b" " * 200_000 + b"}", "headers": raw}),
        ("missing field", {"json": {k: v for k, v in _body(8).items() if k != "contact"}}),
        ("unknown campaign", {"json": _body(9, campaign_id="nope")}),
        ("no token", {"json": _body(10, campaign_id="locked")}),
        (
            "ingest bearer",
            {"json": _body(11, campaign_id="locked"), "headers": {"Authorization": f"Bearer {ingest}"}},
        ),
        (
            "bad bearer",
            {"json": _body(12, campaign_id="locked"), "headers": {"Authorization": "Bearer nope"}},
        ),
        (
            "bad origin",
            {
                "json": _body(13, campaign_id="locked"),
                "headers": {"Origin": "https://evil.example", "X-Campaign-Token": "x"},
            },
        ),
        (
            "bad token",
            {
                "json": _body(14, campaign_id="locked"),
                "headers": {"Origin": "https://ok.example", "X-Campaign-Token": "x"},
            },
        ),
        (
            "origin and request id",
            {"json": _body(15), "headers": {"Origin": "https://x.example", "X-Request-ID": "abc-123"}},
        ),
        ("honeypot", {"json": _body(16, form_metadata={**EXAMPLE_LEAD["form_metadata"], "honeypot": "x"})}),
        ("query string", {"json": _body(17), "params": {"a": "b"}}),
    ]


async def _answers(settings: Settings, fast: bool) -> list[tuple[Any, ...]]:
    app = create_app(settings, capture_fast_path=fast)
    answers: list[tuple[Any, ...]] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            async with state_of(app).engine.begin() as conn:
                admin = (await create_token(conn, name="admin", role="admin")).token
                ingest = (await create_token(conn, name="ingest", role="ingest")).token
            headers = {"Authorization": f"Bearer {admin}"}
            for campaign in (
                {"id": "nextcloud-installation-2025", "name": "N", "campaign_type": "service"},
                {
                    "id": "locked",
                    "name": "L",
                    "campaign_type": "service",
                    "generate_token": True,
                    "allowed_origins": ["https://ok.example"],
                },
            ):
                created = await client.post("/v1/api/campaigns", headers=headers, json=campaign)
                assert created.status_code == 201, created.text
            for name, request in _cases(ingest):
                response = await client.post(URL, **request)
                body = response.json() if response.content else None
                if isinstance(body, dict) and isinstance(body.get("lead_id"), str):
                    body["lead_id"] = "lead_" if body["lead_id"].startswith("lead_") else body["lead_id"]
                kept = {
                    k: v for k, v in response.headers.items() if k not in ("content-length", "x-request-id")
                }
                request_id = response.headers.get("x-request-id")
                answers.append(
                    (name, response.status_code, body, kept, request_id == "abc-123" or bool(request_id))
                )
            for method, path in (("POST", URL + "/"), ("PUT", URL), ("OPTIONS", URL)):
                response = await client.request(method, path, headers={"Origin": "https://ok.example"})
                answers.append(
                    (method + " " + path, response.status_code, response.text, dict(response.headers))
                )
        rejected = state_of(app).guard.local.get(f"leadflow/fail/{'127.0.0.1'}")
    answers.append(("failures counted towards lock-out", rejected))
    return answers


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_fast_path_answers_like_the_route(
    settings_factory: Callable[..., Settings], sqlite_template: Path, tmp_path: Path
) -> None:
    other = tmp_path / "routed.db"
    shutil.copy(sqlite_template, other)
    fast = await _answers(settings_factory(), True)
    routed = await _answers(settings_factory(database_url=f"sqlite+aiosqlite:///{other}"), False)
    for a, b in zip(fast, routed, strict=True):
        if a[0].startswith(("POST /", "PUT", "OPTIONS")):
            a, b = a[:3], b[:3]  # request ids and dates differ
        assert a == b
    statuses = {name: status for name, status, *_ in fast[:-4]}
    assert statuses["created"] == 201 and statuses["key too long"] == 400
    assert statuses["duplicate"] == 409 and statuses["too large"] == 413
    assert fast[-1][1] > 0


@pytest.mark.parametrize("kind", ["created", "replay", "spooled"])
def test_the_answer_body_is_the_documented_model(kind: str) -> None:
    """capture_lead builds its body without the Pydantic model: it must be exactly the model's dump."""
    from leadflow.leads.capture.http import _answer
    from leadflow.leads.capture.policy import CaptureOutcome
    from leadflow.leads.schemas import CaptureResponse

    response = _answer(CaptureOutcome(kind, "lead_abc123def456", "B", True), None, 24)  # type: ignore[arg-type]
    body = orjson.loads(response.body)
    assert list(body) == list(CaptureResponse.model_fields)
    assert CaptureResponse.model_validate(body).model_dump() == body
