"""Microsoft Teams incoming webhook, per ``shared/contracts/msteams/incoming-webhook.md``.

``POST <webhook path>`` with ``Content-Type: application/json``. A body with ``attachments`` must be the
documented envelope: ``type`` is ``"message"``, ``attachments`` a non-empty array of objects whose
``contentType`` is ``application/vnd.microsoft.card.adaptive``, ``contentUrl`` absent or null, and
``content`` an Adaptive Card that validates against ``adaptive-card-1.5.0.schema.json`` (Draft 6) and
uses no ``Action.Submit`` (unsupported in webhooks). A plain ``{"text": ...}`` body and the legacy
``MessageCard`` (summary or text required) are accepted too.

Answers ``200`` with body ``1``. Bad payloads get ``400`` and a plain-text reason. Like the real
connector, throttling is reported in the *body* of a 200 ("Microsoft Teams endpoint returned HTTP error
429 ...") once more than ``per_second`` requests (4, the documented limit) arrive within one second.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any, Self

from jsonschema import Draft6Validator

from tests.fakes.server import FakeVendor, Recorded, Reply

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
BAD_PAYLOAD = "Bad payload received by generic incoming webhook."
THROTTLED = (
    "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 "
    "with ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deadbeef.0.."
)


def _text(body: str, status: int) -> Reply:
    return Reply(status, body, content_type="text/plain")


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every object in a JSON tree."""
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


class FakeTeams(FakeVendor):
    def __init__(self, card_schema: Path, per_second: int = 4) -> None:
        super().__init__()
        schema = json.loads(card_schema.read_text())
        Draft6Validator.check_schema(schema)
        self.validator = Draft6Validator(schema)
        self.webhook_path = f"/webhookb2/{secrets.token_hex(16)}/IncomingWebhook/{secrets.token_hex(16)}"
        self.per_second = per_second
        self.stall_seconds = 0.0
        self._recent: deque[float] = deque()
        self.card_errors: list[str] = []  # why the last refused card failed validation
        # Bodies really delivered (a throttled request is a 200 too, so ``accepted`` counts it).
        self.delivered: list[Recorded] = []

    def __enter__(self) -> Self:
        super().__enter__()
        return self

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}{self.webhook_path}"

    def _throttled(self) -> bool:
        now = time.monotonic()
        while self._recent and now - self._recent[0] > 1.0:
            self._recent.popleft()
        self._recent.append(now)
        return len(self._recent) > self.per_second

    def check_envelope(self, payload: Any) -> str | None:
        """The reason Teams would refuse this body, or None."""
        if not isinstance(payload, dict):
            return BAD_PAYLOAD
        if "attachments" not in payload:
            if payload.get("@type") == "MessageCard":
                return (
                    None if payload.get("summary") or payload.get("text") else "Summary or Text is required."
                )
            text = payload.get("text")
            return None if isinstance(text, str) and text else "Text is required."
        if payload.get("type") != "message":
            return f'{BAD_PAYLOAD} "type" must be "message".'
        attachments = payload["attachments"]
        if not isinstance(attachments, list) or not attachments:
            return f"{BAD_PAYLOAD} attachments must be a non-empty array."
        for attachment in attachments:
            if not isinstance(attachment, dict):
                return f"{BAD_PAYLOAD} an attachment must be an object."
            if attachment.get("contentType") != ADAPTIVE_CARD:
                return f"{BAD_PAYLOAD} contentType must be {ADAPTIVE_CARD}."
            if attachment.get("contentUrl") is not None:
                return f"{BAD_PAYLOAD} contentUrl must be null."
            card = attachment.get("content")
            if not isinstance(card, dict):
                return f"{BAD_PAYLOAD} content must be an Adaptive Card object."
            errors = sorted(self.validator.iter_errors(card), key=lambda e: list(e.absolute_path))
            if errors:
                self.card_errors = [f"{list(e.absolute_path)}: {e.message}" for e in errors]
                return f"{BAD_PAYLOAD} The card does not match the Adaptive Card schema."
            if not isinstance(card.get("version"), str):
                return f"{BAD_PAYLOAD} The card needs a version."
            if any(node.get("type") == "Action.Submit" for node in _walk(card)):
                return f"{BAD_PAYLOAD} Action.Submit is not supported in incoming webhooks."
        return None

    def handle(self, request: Recorded) -> Reply:
        if self.stall_seconds:
            time.sleep(self.stall_seconds)
        if request.path != self.webhook_path:
            return _text("Webhook Bad Request - Null or empty event", 404)
        if request.method != "POST":
            return _text("Method not allowed", 405)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return _text(BAD_PAYLOAD, 400)
        if self._throttled():
            return _text(THROTTLED, 200)
        try:
            payload = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _text(BAD_PAYLOAD, 400)
        error = self.check_envelope(payload)
        if error is not None:
            return _text(error, 400)
        with self._lock:
            self.delivered.append(request)
        return _text("1", 200)
