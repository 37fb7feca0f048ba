"""Response headers of every workspace page, the session cookie, and CSRF tokens.

* **Content-Security-Policy**: scripts and styles only from this origin (no inline script or style,
  no ``eval``), no framing (``frame-ancestors 'none'``), forms post only here, nothing from elsewhere.
* **CSRF**: every state-changing request (POST, PUT, PATCH, DELETE) carries a token, in the form
  field ``csrf_token`` or the ``X-CSRF-Token`` header (htmx, set by ``static/app.js``). Signed in, it
  is the session's secret (stored with the session, so every process knows it); before sign-in (the
  sign-in and password-reset forms) it is an HMAC of a random pre-session cookie under a key derived
  from the encryption key, so a cookie planted by another site cannot forge it. A browser that says the
  request comes from another site (``Sec-Fetch-Site: cross-site``) is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from leadflow.config import Settings
from leadflow.security.sessions import COOKIE

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
PRIVATE = "no-store"  # pages hold personal data: never in a shared or back-button cache

PRE_COOKIE = "lf_presession"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def apply_headers(response: Response, *, csp: str = CSP) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Content-Security-Policy"] = csp
    response.headers.setdefault("Cache-Control", PRIVATE)
    return response


def is_https(request: Request, settings: Settings) -> bool:
    """HTTPS to the browser: served with TLS, or PUBLIC_BASE_URL says so (TLS ends at a proxy)."""
    return request.url.scheme == "https" or settings.public_base_url.startswith("https://")


def set_cookie(
    response: Response, request: Request, settings: Settings, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(request, settings),
    )


def set_session_cookie(response: Response, request: Request, settings: Settings, token: str) -> None:
    # A browser-session cookie: the server decides when the session ends (idle and absolute expiry).
    set_cookie(response, request, settings, COOKIE, token, None)


def clear_session_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request, settings)
    )


# -- pre-session CSRF (sign-in and reset forms) ---------------------------------------------------------
def _key(settings: Settings) -> bytes:
    return hashlib.sha256(b"leadflow/web/csrf\x00" + settings.encryption_keys[0]).digest()


def presession_token(settings: Settings, cookie: str) -> str:
    return hmac.new(_key(settings), cookie.encode(), hashlib.sha256).hexdigest()


def ensure_presession(request: Request) -> tuple[str, bool]:
    """The browser's pre-session cookie value, or a new one (True: it must be set on the response)."""
    value = request.cookies.get(PRE_COOKIE, "")
    if 20 <= len(value) <= 100:
        return value, False
    return secrets.token_urlsafe(24), True


async def submitted_token(request: Request) -> str | None:
    """The CSRF token a request carries (header first, then the form field)."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # Starlette caches it: the route reads the same parsed form
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def tokens_match(expected: str, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
