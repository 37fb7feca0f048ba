"""SendGrid v3 mail send, per ``shared/contracts/sendgrid/mail-send-v3.subset.json``.

``POST /v3/mail/send`` with ``Authorization: Bearer <key>`` and a JSON body that validates against the
contract's ``PostMailSend`` schema (JSON Schema 2020-12, e-mail formats checked), plus SendGrid's rules
the schema states only in prose: every personalization has at least one ``to``; a subject globally or
in every personalization; ``content`` (unless ``template_id``) with ``text/plain`` before ``text/html``;
no reserved headers; header values are strings.

Answers ``202`` with an empty body and ``X-Message-Id``; errors use SendGrid's
``{"errors": [{"field", "message", "help"}]}`` shape (400, 401, 404, 405).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any, Self

from jsonschema import Draft202012Validator, FormatChecker

from tests.fakes.server import FakeVendor, Recorded, Reply

RESERVED_HEADERS = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}
_BODY_POINTER = "#/components/requestBodies/PostMailSend/content/application~1json/schema"


def sendgrid_error(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Reply:
    return Reply(
        status, {"errors": [{"field": field, "message": message, "help": None}]}, headers=headers or {}
    )


class FakeSendGridMail(FakeVendor):
    def __init__(self, contract: Path, api_key: str | None = None) -> None:
        super().__init__()
        doc: dict[str, Any] = json.loads(contract.read_text())
        self.validator = Draft202012Validator({**doc, "$ref": _BODY_POINTER}, format_checker=FormatChecker())
        self.api_key = api_key or "SG." + secrets.token_urlsafe(16) + "." + secrets.token_urlsafe(24)
        self.stall_seconds = 0.0

    def __enter__(self) -> Self:
        super().__enter__()
        return self

    def rules(self, body: dict[str, Any]) -> Reply | None:
        """SendGrid's checks beyond the schema."""
        for i, personalization in enumerate(body["personalizations"]):
            if not personalization.get("to"):
                return sendgrid_error(
                    400,
                    "The to array is required for all personalization objects, and must have at least one "
                    "email object with a valid email address.",
                    f"personalizations.{i}.to",
                )
        if (
            not body.get("subject")
            and not body.get("template_id")
            and not all(p.get("subject") for p in body["personalizations"])
        ):
            return sendgrid_error(
                400,
                "The subject is required. You can get around this requirement if you use a template "
                "with a subject defined or if every personalization has a subject defined.",
                "subject",
            )
        content = body.get("content")
        if not content and not body.get("template_id"):
            return sendgrid_error(
                400,
                "Unless a valid template_id is provided, the content parameter is required. There must be "
                "at least one defined content block. We typically suggest both text/plain and text/html "
                "blocks are included, but only one block is required.",
                "content",
            )
        types = [c["type"] for c in content or []]
        expected = [t for t in ("text/plain", "text/html") if t in types]
        if types[: len(expected)] != expected:
            return sendgrid_error(
                400,
                "If present, text/plain and text/html may only be provided in order, following by any other "
                "content.",
                "content",
            )
        headers = body.get("headers") or {}
        for name, value in headers.items():
            if name.lower() in RESERVED_HEADERS:
                return sendgrid_error(
                    400,
                    "The following headers are reserved and cannot be used: "
                    + ", ".join(sorted(RESERVED_HEADERS)),
                    f"headers.{name}",
                )
            if not isinstance(value, str):
                return sendgrid_error(
                    400, "Invalid type. Expected: string, given: " + type(value).__name__, "headers"
                )
        return None

    def handle(self, request: Recorded) -> Reply:
        if self.stall_seconds:
            time.sleep(self.stall_seconds)
        if request.path != "/v3/mail/send":
            return sendgrid_error(404, "not found")
        if request.method != "POST":
            return sendgrid_error(405, "method not allowed")
        auth = request.headers.get("authorization")
        if not auth:
            return sendgrid_error(401, "authorization required")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token, self.api_key):
            return sendgrid_error(401, "The provided authorization grant is invalid, expired, or revoked")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return sendgrid_error(400, "Content-Type should be application/json.")
        try:
            body = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return sendgrid_error(400, "Bad Request")
        errors = sorted(self.validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            field = ".".join(str(p) for p in first.absolute_path) or None
            return sendgrid_error(400, first.message, field)
        refused = self.rules(body)
        if refused is not None:
            return refused
        return Reply(
            202, None, headers={"X-Message-Id": secrets.token_urlsafe(16)}, content_type="text/plain"
        )
