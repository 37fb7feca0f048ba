"""Signed, expiring, single-use unsubscribe links (RFC 8058 one-click) for marketing e-mails.

A link is ``{PUBLIC_BASE_URL}/v1/unsubscribe/{token}``; the token is
``<lead id>.<expiry, unix seconds>.<nonce>.<signature>`` where the signature is the base64url
HMAC-SHA256 of the first three parts under a key derived (HKDF-SHA256, ``info = "leadflow unsubscribe
v1"``) from the encryption key. It holds no personal data. Links signed under a key that was later
rotated into ``ENCRYPTION_OLD_KEYS`` keep working until they expire. A used link is remembered by its
SHA-256 (table ``unsubscribe_uses``) so it works once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jinja2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from leadflow.config import Settings

PATH = "/v1/unsubscribe/{token}"
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
TOKEN_RE = re.compile(r"^(lead_[0-9a-f]{12})\.(\d{1,12})\.([A-Za-z0-9_-]{12})\.([A-Za-z0-9_-]{43})$")


def signing_key(key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"leadflow unsubscribe v1").derive(key)


def _sign(key: bytes, message: str) -> str:
    digest = hmac.new(signing_key(key), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_token(key: bytes, lead_id: str, expires: datetime, nonce: str | None = None) -> str:
    body = f"{lead_id}.{int(expires.timestamp())}.{nonce or secrets.token_urlsafe(9)}"
    return f"{body}.{_sign(key, body)}"


class LinkError(Exception):
    """Why a link does not work: ``invalid`` (malformed, forged) or ``expired``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Link:
    lead_id: str
    expires: datetime
    token_hash: str  # what unsubscribe_uses stores


def read_token(keys: list[bytes], token: str, now: datetime) -> Link:
    """The link's lead id if ``token`` was signed by one of ``keys`` and has not expired."""
    match = TOKEN_RE.fullmatch(token)  # not .match: "$" also matches before a final newline
    if match is None:
        raise LinkError("invalid")
    lead_id, expiry, _nonce, signature = match.groups()
    body = token.rsplit(".", 1)[0]
    if not any(hmac.compare_digest(_sign(key, body), signature) for key in keys):
        raise LinkError("invalid")
    expires = datetime.fromtimestamp(int(expiry), UTC)
    if expires <= now:
        raise LinkError("expired")
    return Link(lead_id, expires, hashlib.sha256(token.encode()).hexdigest())


def link_for(settings: Settings, lead_id: str, now: datetime) -> str:
    """A fresh link for an e-mail to this lead, valid ``UNSUBSCRIBE_LINK_DAYS``."""
    token = make_token(
        settings.encryption_keys[0], lead_id, now + timedelta(days=settings.unsubscribe_link_days)
    )
    return settings.public_base_url.rstrip("/") + PATH.format(token=token)


def list_unsubscribe_headers(url: str, mailto: str | None = None) -> dict[str, str]:
    """``List-Unsubscribe`` (the HTTPS link first, a mailto fallback) and RFC 8058's one-click header."""
    targets = [f"<{url}>"]
    if mailto:
        targets.append(f"<mailto:{mailto}?subject=unsubscribe>")
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": ONE_CLICK_BODY}


_pages = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def page(state: str, action: str | None = None) -> str:
    """The HTML page for a link state: ``confirm``, ``done``, ``used``, ``expired``, ``invalid``."""
    return _pages.get_template("unsubscribe.html").render(state=state, action=action)
