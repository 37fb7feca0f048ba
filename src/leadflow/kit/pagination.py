"""Opaque cursors for keyset pagination (newest first, by primary key).

A cursor is ``base64url("v1:<id>")`` without padding, where ``<id>`` is the decimal primary key of the
last row of the page (1 … 2^63 - 1, no sign, no leading zero). Only a cursor in exactly the form
:func:`encode_cursor` produces is accepted; anything else (another version, padding, a number out of
range, a value that does not re-encode to the same text) is 400 ``INVALID_CURSOR``, never a database
error.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from fastapi import Query

from leadflow.errors import ApiError

MAX_ID = 2**63 - 1  # the largest BIGINT every supported database stores
# The query parameter of every paged endpoint. No max_length here: any text that is not a cursor we
# issued, however long, is INVALID_CURSOR (the request head is bounded by MAX_HEADER_BYTES anyway).
CursorParam = Annotated[
    str | None,
    Query(
        description="`next_cursor` of the previous page; anything else is 400 `INVALID_CURSOR`",
        examples=["djE6MTIz"],
    ),
]
_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_VALUE = re.compile(r"^v1:([1-9][0-9]{0,18})$")


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode().rstrip("=")


def _invalid() -> ApiError:
    return ApiError(400, "INVALID_CURSOR", "The pagination cursor is not valid", field="cursor")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    if not _CURSOR.match(cursor):
        raise _invalid()
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise _invalid() from exc
    match = _VALUE.match(text)
    if match is None:
        raise _invalid()
    value = int(match.group(1))
    if value > MAX_ID or encode_cursor(value) != cursor:
        raise _invalid()
    return value
