"""Opaque cursors for keyset pagination (newest first, by primary key)."""

from __future__ import annotations

import base64
import binascii

from leadflow.errors import ApiError


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        version, _, value = text.partition(":")
        if version != "v1":
            raise ValueError(version)
        return int(value)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "INVALID_CURSOR", "The pagination cursor is not valid", field="cursor") from exc
