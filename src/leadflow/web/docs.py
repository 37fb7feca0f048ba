"""``/docs``: Swagger UI from the vendored ``swagger-ui-dist`` files (works offline, no CDN).

FastAPI's page has one inline ``<script>`` (the Swagger UI set-up); the page's Content-Security-Policy
allows exactly that script by its SHA-256 and nothing else inline.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from leadflow.web.assets import asset
from leadflow.web.security import apply_headers

_INLINE = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _hashes(html: str) -> str:
    found = [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE.findall(html)
    ]
    return " ".join(found)


def docs_csp(html: str) -> str:
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' {_hashes(html)}".strip(),
            "style-src 'self' 'unsafe-inline'",  # Swagger UI sets style attributes in its markup
            "img-src 'self' data:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        )
    )


async def swagger_ui(request: Request) -> Response:
    page: HTMLResponse = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Leadflow API",
        swagger_js_url=asset("vendor/swagger-ui/swagger-ui-bundle.js"),
        swagger_css_url=asset("vendor/swagger-ui/swagger-ui.css"),
        swagger_favicon_url=asset("vendor/swagger-ui/favicon-32x32.png"),
        swagger_ui_parameters={"validatorUrl": None},  # never ask validator.swagger.io
    )
    html = bytes(page.body).decode()
    response = HTMLResponse(html)
    apply_headers(response, csp=docs_csp(html))
    response.headers["Cache-Control"] = "no-cache"
    return response


route = Route("/docs", swagger_ui, methods=["GET", "HEAD"], include_in_schema=False)
