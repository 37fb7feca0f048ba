"""embed.js as shipped: its bytes, gzip, version (content hash) and Subresource Integrity value."""

from __future__ import annotations

import base64
import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

GZIP_BUDGET = 6 * 1024  # the limit for the script, gzipped


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    version: str  # the first 16 hex digits of the SHA-256 of the body: the versioned URL's name
    integrity: str  # "sha384-<base64>", for <script integrity=...>
    etag: str

    @property
    def path(self) -> str:
        return f"/v1/embed-{self.version}.js"


@cache
def embed_script() -> Asset:
    body = files("leadflow.forms").joinpath("embed.js").read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    return Asset(
        body=body,
        gzipped=gzip.compress(body, compresslevel=9, mtime=0),
        version=digest[:16],
        integrity="sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode(),
        etag=f'"{digest[:32]}"',
    )
