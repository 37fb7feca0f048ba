"""Static files under content-hashed names with long cache headers; /docs offline from vendored files."""

from __future__ import annotations

import hashlib
import re

from leadflow.web.assets import STATIC, asset, manifest
from tests.conftest import Harness


async def test_assets_are_served_by_content_hash(harness: Harness) -> None:
    url = asset("app.js")
    digest = hashlib.sha256((STATIC / "app.js").read_bytes()).hexdigest()[:12]
    assert url == f"/static/app.{digest}.js"
    answer = await harness.client.get(url)
    assert answer.status_code == 200 and answer.content == (STATIC / "app.js").read_bytes()
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.headers["x-content-type-options"] == "nosniff"
    for missing in ("/static/app.js", "/static/app.000000000000.js", "/static/../app.py"):
        assert (await harness.client.get(missing)).status_code == 404, missing


def test_vendored_libraries_keep_their_licences() -> None:
    names = set(manifest())
    for library in ("htmx", "swagger-ui"):
        assert f"vendor/{library}/LICENSE" in names, library
    assert "vendor/htmx/htmx.min.js" in names


async def test_docs_work_offline(harness: Harness) -> None:
    page = await harness.client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/") for s in sources), sources  # nothing from a CDN
    for source in sources:
        if source.startswith("/static/"):
            assert (await harness.client.get(source)).status_code == 200, source
    csp = page.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in csp and "frame-ancestors 'none'" in csp
    assert "cdn" not in page.text.lower()
    assert (await harness.client.get("/openapi.json")).status_code == 200
    assert (await harness.client.get("/redoc")).status_code == 404  # ReDoc needs a CDN: not served
