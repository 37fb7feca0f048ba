"""Slack incoming webhook, as documented in ``shared/contracts/slack/incoming-webhooks.md``.

Accepts ``POST <webhook path>`` with ``Content-Type: application/json`` and a JSON object carrying
``text`` and/or Block Kit ``blocks``; answers ``200 ok`` (text/plain). Errors are Slack's plain strings:
``400 invalid_payload`` (not JSON / wrong content type), ``400 no_text``, ``400 invalid_blocks``,
``404 no_service`` (unknown webhook), ``410 channel_is_archived`` (after :meth:`archive`).
Block checks cover the block types and limits this project uses (header, section, actions, context,
divider) with Slack's documented maximum lengths.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Self

from tests.fakes.server import FakeVendor, Recorded, Reply

TEXT_TYPES = {"plain_text", "mrkdwn"}


def _text(reply: str, status: int = 400) -> Reply:
    return Reply(status, reply, content_type="text/plain")


class BlockError(ValueError):
    pass


def _text_object(obj: Any, where: str, *, limit: int, plain_only: bool = False) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in TEXT_TYPES:
        raise BlockError(f"{where}: must be a text object")
    if plain_only and obj["type"] != "plain_text":
        raise BlockError(f"{where}: must be plain_text")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        raise BlockError(f"{where}.text: must be a non-empty string")
    if len(text) > limit:
        raise BlockError(f"{where}.text: must be at most {limit} characters")
    extra = set(obj) - {"type", "text", "emoji", "verbatim"}
    if extra:
        raise BlockError(f"{where}: unknown keys {sorted(extra)}")


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, dict):
        raise BlockError(f"{where}: must be an object")
    kind = block.get("type")
    if kind == "header":
        _text_object(block.get("text"), f"{where}.text", limit=150, plain_only=True)
    elif kind == "section":
        if "text" not in block and "fields" not in block:
            raise BlockError(f"{where}: needs text or fields")
        if "text" in block:
            _text_object(block["text"], f"{where}.text", limit=3000)
        if "fields" in block:
            fields = block["fields"]
            if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                raise BlockError(f"{where}.fields: 1 to 10 items")
            for i, field in enumerate(fields):
                _text_object(field, f"{where}.fields[{i}]", limit=2000)
    elif kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            raise BlockError(f"{where}.elements: 1 to 25 items")
        for i, element in enumerate(elements):
            if not isinstance(element, dict) or element.get("type") != "button":
                raise BlockError(f"{where}.elements[{i}]: only buttons are supported by this fake")
            _text_object(element.get("text"), f"{where}.elements[{i}].text", limit=75, plain_only=True)
            url = element.get("url")
            if url is not None and (not isinstance(url, str) or len(url) > 3000):
                raise BlockError(f"{where}.elements[{i}].url: at most 3000 characters")
            if element.get("style") not in (None, "primary", "danger"):
                raise BlockError(f"{where}.elements[{i}].style: primary or danger")
            action_id = element.get("action_id")
            if action_id is not None and (not isinstance(action_id, str) or len(action_id) > 255):
                raise BlockError(f"{where}.elements[{i}].action_id: at most 255 characters")
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            raise BlockError(f"{where}.elements: 1 to 10 items")
        for i, element in enumerate(elements):
            _text_object(element, f"{where}.elements[{i}]", limit=3000)
    elif kind == "divider":
        pass
    else:
        raise BlockError(f"{where}.type: unsupported block type {kind!r}")
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > 255):
        raise BlockError(f"{where}.block_id: at most 255 characters")


def check_payload(payload: Any) -> str | None:
    """Slack's error string for a body it would refuse, else None."""
    if not isinstance(payload, dict):
        return "invalid_payload"
    text = payload.get("text")
    blocks = payload.get("blocks")
    if text is not None and not isinstance(text, str):
        return "invalid_payload"
    if not text and not blocks:
        return "no_text"
    if blocks is not None:
        if not isinstance(blocks, list) or len(blocks) > 50:
            return "invalid_blocks"
        try:
            for i, block in enumerate(blocks):
                _check_block(block, f"blocks[{i}]")
        except BlockError:
            return "invalid_blocks"
    return None


class FakeSlack(FakeVendor):
    def __init__(self) -> None:
        super().__init__()
        token = secrets.token_hex(12)
        self.webhook_path = (
            f"/services/T{secrets.token_hex(4).upper()}/B{secrets.token_hex(4).upper()}/{token}"
        )
        self.stall_seconds = 0.0  # sleep this long before answering (client timeouts)
        self.archived = False

    def __enter__(self) -> Self:
        super().__enter__()
        return self

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}{self.webhook_path}"

    def archive(self) -> None:
        self.archived = True

    def handle(self, request: Recorded) -> Reply:
        if self.stall_seconds:
            time.sleep(self.stall_seconds)
        if request.path != self.webhook_path:
            return _text("no_service", 404)
        if request.method != "POST":
            return _text("invalid_payload", 400)
        if self.archived:
            return _text("channel_is_archived", 410)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return _text("invalid_payload", 400)
        try:
            payload = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _text("invalid_payload", 400)
        error = check_payload(payload)
        if error is not None:
            return _text(error, 400)
        return _text("ok", 200)
