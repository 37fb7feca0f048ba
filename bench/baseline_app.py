"""The benchmark's baseline: the capture request parsed on Leadflow's server stack, nothing stored.

``POST /v1/api/leads`` reads the body, validates it with the same model and context as the real
endpoint (:class:`leadflow.leads.schemas.CaptureRequest`, ``model_validate_json``, the configured
phone region) and answers 201 with the same response shape, serialised the same way (orjson).
There is no database, no campaign look-up, no encryption, no scoring and no logging middleware, so
``capture / baseline`` is the share of the request-parsing ceiling that the real endpoint keeps.

``GET /v1/api/leads/{lead_id}/status`` answers a constant status body (after the same bearer-header
check shape and path check): the ceiling of a small authenticated GET on this stack, printed as an
extra row for reading the status figures.

Run: ``.venv/bin/python bench/baseline_app.py --port 8001`` (one uvicorn worker, uvloop, httptools,
access log off: the same server settings as ``leadflow serve``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI, Request, Response
from pydantic import ValidationError

from leadflow.config import load_settings
from leadflow.errors import ApiError, install_error_handlers, json_response, validation_error
from leadflow.kit.ids import LEAD_ID_RE, new_lead_ids
from leadflow.leads.capture import RESPONSE_TIMES
from leadflow.leads.schemas import CaptureRequest, CaptureResponse, LeadStatusResponse


def create_app() -> FastAPI:
    settings = load_settings()
    context = {"phone_region": settings.default_phone_region}
    app = FastAPI(title="Leadflow benchmark baseline", openapi_url=None, docs_url=None, redoc_url=None)
    install_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.post("/v1/api/leads", status_code=201)
    async def capture(request: Request) -> Response:
        raw = await request.body()
        try:
            CaptureRequest.model_validate_json(raw, context=context)
        except ValidationError as exc:
            raise validation_error(exc.errors(include_input=False)) from None
        _, public_id = new_lead_ids()
        response = CaptureResponse(
            lead_id=public_id,
            next_steps={
                "expected_response_time": RESPONSE_TIMES["A"],
                "contact_method": "email",
                "tracking_enabled": True,
            },
        )
        return json_response(response.model_dump(), 201)

    @app.get("/v1/api/leads/{lead_id}/status")
    async def status(request: Request, lead_id: str) -> Response:
        if not request.headers.get("authorization", "").lower().startswith("bearer "):
            raise ApiError(401, "UNAUTHORIZED", "An API token is required")
        if not LEAD_ID_RE.match(lead_id):
            raise ApiError(404, "LEAD_NOT_FOUND", "Lead not found", field="lead_id")
        body = LeadStatusResponse(
            lead_id=lead_id,
            status="new",
            last_updated=datetime.now(UTC),
            assigned_to=None,
            next_action="Initial contact within 2 hours",
            estimated_response_time="2 hours",
        )
        return json_response(body.model_dump(mode="json"))

    return app


def main() -> None:
    from floor_app import serve  # bench/ is the script's directory, first on sys.path

    serve(create_app(), __doc__)


if __name__ == "__main__":
    main()
