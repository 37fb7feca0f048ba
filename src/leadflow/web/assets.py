"""Static files of the workspace, served under content-hashed names with a year-long cache.

``asset("app.css")`` (a template global) names ``/static/app.3f9c2a1b7d04.css``: the hash changes
whenever the file does, so browsers may keep every version for ever (``immutable``) and still never
run a stale script after an upgrade. Only files in ``web/static/`` are served, by their hashed names;
anything else is 404. Nothing comes from a CDN: the vendored libraries live in ``static/vendor/<name>/``
next to their licence files (docs/workspace.md lists their versions).
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

STATIC = Path(__file__).parent / "static"
PREFIX = "/static/"
YEAR = 365 * 24 * 3600
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    path: Path
    url: str
    media_type: str


def hashed_name(relative: str, content: bytes) -> str:
    """``vendor/htmx/htmx.min.js`` -> ``vendor/htmx/htmx.min.<12 hex>.js``."""
    path = PurePosixPath(relative)
    digest = hashlib.sha256(content).hexdigest()[:12]
    return str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))


@cache
def manifest() -> dict[str, Asset]:
    """Every static file by its plain relative name (computed once per process)."""
    found: dict[str, Asset] = {}
    for file in sorted(STATIC.rglob("*")):
        if not file.is_file():
            continue
        relative = file.relative_to(STATIC).as_posix()
        media = TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        found[relative] = Asset(file, PREFIX + hashed_name(relative, file.read_bytes()), media)
    return found


@cache
def _by_url() -> dict[str, Asset]:
    return {asset.url: asset for asset in manifest().values()}


def asset(name: str) -> str:
    """The URL of a static file (KeyError for a name that does not exist: a template bug)."""
    return manifest()[name].url


async def serve(request: Request) -> Response:
    found = _by_url().get(request.url.path)
    headers = {"X-Content-Type-Options": "nosniff"}
    if found is None:
        return Response("Not found", status_code=404, media_type="text/plain", headers=headers)
    headers["Cache-Control"] = f"public, max-age={YEAR}, immutable"
    return FileResponse(found.path, media_type=found.media_type, headers=headers)


route = Route(PREFIX + "{name:path}", serve, methods=["GET", "HEAD"], include_in_schema=False)
