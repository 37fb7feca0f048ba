"""The benchmark's baseline: the stack's floor. FastAPI + a Pydantic model of the spec's request shape.

``POST /v1/api/leads`` takes the spec's capture request as a plain Pydantic model — every field a
``str`` (or ``bool`` for the consent flag), nothing validated beyond that — through an ordinary FastAPI
route, and answers 201 with the spec's response shape. No database, no e-mail or phone validation,
no campaign look-up, no encryption, no middleware: what any FastAPI service on this server stack pays
per request before it does anything. ``capture / baseline`` is the share of that floor the real,
durable capture endpoint keeps (issue 8, item 4).

Run: ``.venv/bin/python bench/floor_app.py --port 8001`` (one uvicorn worker, uvloop, httptools,
access log off: the same server settings as ``leadflow serve``).
"""

from __future__ import annotations

import argparse
import secrets

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field


class Contact(BaseModel):
    first_name: str = Field(alias="firstName")
    last_name: str = Field(alias="lastName")
    email: str
    phone: str | None = None
    company: str | None = None


class LeadDetails(BaseModel):
    service_interest: str | None = None
    urgency: str | None = None
    message: str | None = None
    budget_range: str | None = None
    timeline: str | None = None


class Tracking(BaseModel):
    visitor_id: str | None = None
    session_id: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    referrer_url: str | None = None
    landing_page_url: str | None = None
    user_agent: str | None = None
    ip_address: str | None = None


class FormMetadata(BaseModel):
    form_type: str | None = None
    form_version: str | None = None
    consent_given: bool = False
    timestamp: str | None = None


class LeadRequest(BaseModel):
    campaign_id: str
    source: str
    contact: Contact
    lead_details: LeadDetails = LeadDetails()
    tracking: Tracking = Tracking()
    form_metadata: FormMetadata = FormMetadata()


class NextSteps(BaseModel):
    expected_response_time: str
    contact_method: str
    tracking_enabled: bool


class LeadResponse(BaseModel):
    success: bool = True
    lead_id: str
    message: str = "Lead captured successfully"
    next_steps: NextSteps


def create_app() -> FastAPI:
    app = FastAPI(title="FastAPI floor", openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/api/leads", status_code=201)
    async def capture(body: LeadRequest) -> LeadResponse:
        return LeadResponse(
            lead_id=f"lead_{secrets.token_hex(6)}",
            next_steps=NextSteps(
                expected_response_time="2 hours",
                contact_method="email",
                tracking_enabled=body.tracking.visitor_id is not None,
            ),
        )

    return app


def serve(app: FastAPI, doc: str | None) -> None:
    """``--host``/``--port`` from the command line; one uvicorn worker as ``leadflow serve`` runs it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        proxy_headers=False,
    )


def main() -> None:
    serve(create_app(), __doc__)


if __name__ == "__main__":
    main()
