"""The one error shape (the spec's) and the handlers that make every failure use it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("leadflow.errors")


class ErrorBody(BaseModel):
    """Every expected failure answers with this body and a 4xx status."""

    success: bool = Field(False, examples=[False])
    error: str = Field(examples=["VALIDATION_ERROR"], description="Stable machine-readable error code")
    message: str = Field(examples=["Invalid email format"], description="Human-readable explanation")
    field: str | None = Field(None, examples=["contact.email"], description="Dotted path of the bad field")
    code: int = Field(examples=[400], description="The HTTP status code, repeated")
    lead_id: str | None = Field(None, description="The existing lead, for DUPLICATE_SUBMISSION")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field
        self.headers = headers
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "success": False,
            "error": self.error,
            "message": self.message,
            "field": self.field,
            "code": self.status,
        }
        body.update(self.extra)
        return body

    def response(self) -> Response:
        return json_response(self.body(), self.status, self.headers)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error statuses an endpoint can return."""
    descriptions = {
        400: "Invalid input (VALIDATION_ERROR, INVALID_JSON, ...)",
        401: "Missing or invalid credentials (UNAUTHORIZED, INVALID_CAMPAIGN_TOKEN)",
        403: "Authenticated but not allowed (FORBIDDEN, ORIGIN_NOT_ALLOWED)",
        404: "Not found",
        409: "Conflict with the current state",
        413: "Body too large (PAYLOAD_TOO_LARGE)",
        415: "Content-Type must be application/json (UNSUPPORTED_MEDIA_TYPE)",
        429: "Too many requests (RATE_LIMITED)",
        503: "Temporarily unavailable (SERVICE_UNAVAILABLE)",
    }
    return {c: {"model": ErrorBody, "description": descriptions.get(c, "Error")} for c in codes}


_MESSAGES = {
    "missing": "Field required",
    "string_too_long": "Value is too long",
    "string_too_short": "Value is too short",
    "extra_forbidden": "Unknown field",
}


def _loc_to_field(loc: tuple[int | str, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def validation_error(errors: list[ErrorDetails] | list[Any]) -> ApiError:
    """Map the first pydantic error to the spec's shape (never echoing the input value)."""
    first = errors[0] if errors else {"loc": (), "msg": "Invalid request", "type": "value_error"}
    err_type = str(first.get("type", "value_error"))
    if err_type == "json_invalid":
        return ApiError(400, "INVALID_JSON", "Request body is not valid JSON")
    field = _loc_to_field(tuple(first.get("loc", ())))
    message = _MESSAGES.get(err_type)
    if message is None:
        message = str(first.get("msg", "Invalid value"))
        message = message.removeprefix("Value error, ")
    if err_type == "missing" and field:
        message = f"Required field missing: {field}"
    elif err_type in ("model_type", "dict_type") and not field:
        message = "Request body must be a JSON object"
    return ApiError(400, "VALIDATION_ERROR", message, field=field)


class KeepConnectionOnError:
    """Outermost ASGI layer: an exception after the error response was sent in full ends there.

    Starlette's ``ServerErrorMiddleware`` sends our ``INTERNAL_ERROR`` answer and then re-raises the
    exception "so that servers can log it"; uvicorn, seeing an exception after the response started,
    closes the connection, and the client's next request on that keep-alive connection is reset. The
    exception was already logged (with its stack trace) by the 500 handler, so once the response is
    complete it is dropped here and the connection stays usable. An exception before the response is
    complete still reaches the server, which must then close the connection (its state is unknown).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def tracked(message: Message) -> None:
            nonlocal complete
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            if not complete:
                raise


def database_unavailable() -> ApiError:
    """The answer to a request that needs a database that cannot be reached right now."""
    return ApiError(
        503,
        "SERVICE_UNAVAILABLE",
        "The database is temporarily unavailable; retry shortly",
        headers={"Retry-After": "5"},
    )


def install_error_handlers(app: FastAPI) -> None:
    build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return KeepConnectionOnError(build())

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        from leadflow.security.audit import note_refusal

        note_refusal(request.scope, exc.status, exc.error)  # 401/403/429: audited, aggregated
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> Response:
        return validation_error(list(exc.errors())).response()

    @app.exception_handler(ValidationError)
    async def _validation(_: Request, exc: ValidationError) -> Response:
        return validation_error(exc.errors()).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "UNAUTHORIZED", 403: "FORBIDDEN"}
        return ApiError(
            exc.status_code,
            codes.get(exc.status_code, "HTTP_ERROR"),
            str(exc.detail) if exc.detail else "Error",
            headers=getattr(exc, "headers", None),
        ).response()

    async def _unexpected(_: Request, exc: Exception) -> Response:
        from leadflow.db import database_unreachable

        if database_unreachable(exc):
            # Not a bug: the database is down or unreachable (reads and status answer 503 meanwhile;
            # capture goes to the spool). The client retries.
            log.warning("database_unavailable", exc_type=type(exc).__name__)
            return database_unavailable().response()
        log.error("unhandled_exception", exc_type=type(exc).__name__, exc_info=exc)
        return ApiError(500, "INTERNAL_ERROR", "An unexpected error occurred").response()

    # Database and network errors get handlers of their own, so that Starlette answers them in its
    # exception middleware (a 503 is not re-raised to the server as an unhandled error).
    from sqlalchemy import exc as sa_exc

    for kind in (Exception, sa_exc.DBAPIError, sa_exc.TimeoutError, OSError, TimeoutError):
        app.add_exception_handler(kind, _unexpected)


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson (datetimes, decimals as numbers)."""
    return Response(
        orjson.dumps(body, default=_default),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError
