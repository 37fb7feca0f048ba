"""The one HTTP entry of lead capture: :func:`capture_lead`, from an ASGI request to the answer.

Three callers, one behaviour: :class:`CaptureFastPath` (pure ASGI, the hot path), the FastAPI route
``POST /v1/api/leads`` in ``leads/api.py`` (documentation, and the path when the fast path is off) and
the no-JS form post in ``forms/api.py``. What the answer says is decided here; everything before it
is :func:`leadflow.leads.capture.service.capture`'s.
"""

from __future__ import annotations

import structlog
from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from leadflow.db import database_unreachable
from leadflow.errors import ApiError, database_unavailable, json_response, validation_error
from leadflow.kit.state import AppState, scope_state
from leadflow.leads.capture.policy import RESPONSE_TIMES, CaptureOutcome
from leadflow.leads.capture.service import capture
from leadflow.observability import metrics
from leadflow.security.audit import note_refusal

log = structlog.get_logger("leadflow.leads")

CAPTURE_PATH = "/v1/api/leads"
CORS_HEADERS = "Content-Type, X-Campaign-Token, Idempotency-Key, X-Request-ID"
# Answer headers a cross-origin script (embed.js) may read: retry timing and replay marker.
CORS_EXPOSE = "Retry-After, Idempotent-Replayed, RateLimit-Reset"
CAPTURED_MESSAGE = "Lead captured successfully"
SPOOLED_MESSAGE = "Lead accepted; it is stored as soon as the database is reachable again"
IDEMPOTENCY_KEY_MAX = 255
# The request headers the capture path reads (ASGI header names are lower case).
_CAPTURE_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"x-campaign-token",
        b"idempotency-key",
        b"origin",
        b"authorization",
        b"host",
    }
)


def _headers(scope: Scope) -> dict[str, str]:
    """The capture path's headers from the ASGI scope (the first of repeated ones, like Starlette)."""
    found: dict[str, str] = {}
    for key, value in scope["headers"]:
        if key in _CAPTURE_HEADERS:
            found.setdefault(key.decode("latin-1"), value.decode("latin-1"))
    return found


def _cors(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Vary": "Origin",
        "Access-Control-Expose-Headers": CORS_EXPOSE,
    }


async def capture_lead(state: AppState, scope: Scope, receive: Receive) -> Response:
    """POST /v1/api/leads: from the raw request to the 201 (or the error, raised as ApiError).

    Errors carry the CORS headers too (a cross-origin form script must read the field of a 400 and
    the Retry-After of a 429), except ORIGIN_NOT_ALLOWED: that one the browser must refuse."""
    headers = _headers(scope)
    origin = headers.get("origin")
    try:
        key = headers.get("idempotency-key")
        if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
            # What FastAPI's Header(max_length=255) answers, before any other check.
            raise ApiError(400, "VALIDATION_ERROR", "Value is too long", field="Idempotency-Key")
        client_ip = scope["state"].get("client_ip")
        outcome = await capture(state, headers, receive, client_ip if client_ip != "unknown" else None)
        return _answer(outcome, origin, state.settings.dedup_window_hours)
    except ApiError as exc:
        metrics.count_capture_error(exc.status, exc.error)
        if origin and exc.error != "ORIGIN_NOT_ALLOWED":
            exc.headers = {**_cors(origin), **(exc.headers or {})}
        raise
    except ValidationError:
        metrics.CAPTURE["invalid"].inc()
        raise


def _answer(outcome: CaptureOutcome, origin: str | None, window_hours: float) -> Response:
    cors = _cors(origin) if origin else None
    if outcome.kind == "duplicate":
        raise ApiError(
            409,
            "DUPLICATE_SUBMISSION",
            f"This person already submitted this campaign's form in the last {window_hours:g} hours",
            field="contact.email",
            headers=cors,
            extra={"lead_id": outcome.public_id},
        )
    if outcome.kind == "key_conflict":
        raise ApiError(
            409,
            "IDEMPOTENCY_KEY_REUSED",
            "This Idempotency-Key was already used for a different submission",
            field="Idempotency-Key",
            headers=cors,
        )
    # CaptureResponse's shape (the route's response_model), built without validating our own values.
    body = {
        "success": True,
        "lead_id": outcome.public_id,
        "message": SPOOLED_MESSAGE if outcome.kind == "spooled" else CAPTURED_MESSAGE,
        "next_steps": {
            "expected_response_time": RESPONSE_TIMES.get(outcome.grade, "24 hours"),
            "contact_method": "email",
            "tracking_enabled": outcome.tracking_enabled,
        },
    }
    headers_out = dict(cors or {})
    if outcome.kind == "replay":
        headers_out["Idempotent-Replayed"] = "true"
    return json_response(body, 202 if outcome.kind == "spooled" else 201, headers_out)


def is_capture(scope: Scope) -> bool:
    """Whether a request is ``POST /v1/api/leads`` (exact path), the one the fast path answers."""
    return bool(scope["type"] == "http" and scope["path"] == CAPTURE_PATH and scope["method"] == "POST")


class CaptureFastPath:
    """Pure ASGI: ``POST /v1/api/leads`` straight to :func:`capture_lead`.

    The capture endpoint is the public, high-volume one. Through FastAPI every request also pays for
    route matching over all routes, dependency resolution (the header parameters), a Request object
    and the framework's layers (server errors, exception telemetry, body limit, exception middleware),
    which measured as much CPU as the capture work itself. ``app.LeadflowApp`` hands capture requests
    to ``RequestContextMiddleware(CaptureFastPath(...))`` (request id, client address, access log)
    before FastAPI's own stack; this class matches only that method and exact path, and turns
    ApiError and ValidationError into the same answers as the application's exception handlers, and
    any other error into the handlers' 500 (logged with its stack; the connection stays usable).
    Everything else, the CORS pre-flight included, goes on to ``app`` (the router); the FastAPI route
    stays for the OpenAPI document and calls the same function. The body limit is capture's own
    (``MAX_BODY_BYTES``, checked while reading).
    """

    def __init__(self, app: ASGIApp, route: BaseRoute | None = None) -> None:
        self.app = app
        self.route = route  # what the access log names (scope["route"]), as after routing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_capture(scope):
            await self.app(scope, receive, send)
            return
        if self.route is not None:
            scope["route"] = self.route
        try:
            response = await capture_lead(scope_state(scope), scope, receive)
        except ApiError as exc:
            note_refusal(scope, exc.status, exc.error)
            response = exc.response()
        except ValidationError as exc:
            response = validation_error(exc.errors(include_input=False)).response()
        except Exception as exc:
            if database_unreachable(exc):
                # e.g. a campaign this process never loaded, while the database is down (as the handlers do)
                log.warning("database_unavailable", exc_type=type(exc).__name__)
                response = database_unavailable().response()
            else:  # what the application's 500 handler answers, without re-raising to the server
                log.error("unhandled_exception", exc_type=type(exc).__name__, exc_info=exc)
                response = ApiError(500, "INTERNAL_ERROR", "An unexpected error occurred").response()
        await response(scope, receive, send)
