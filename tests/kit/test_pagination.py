"""Pagination cursors: only a cursor in the form we issue is accepted; anything else is 400 INVALID_CURSOR."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadflow.errors import ApiError
from leadflow.kit.pagination import MAX_ID, decode_cursor, encode_cursor
from tests.conftest import Harness


def _b64(text: str, *, pad: bool = False, urlsafe: bool = True) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    raw = encode(text.encode()).decode()
    return raw if pad else raw.rstrip("=")


FORGED = [
    base64.b64encode(b"v1:9223372036854775808").decode(),  # the attack: one past BIGINT
    _b64("v1:9223372036854775808"),
    _b64("v1:" + "9" * 400),
    _b64("v1:0"),
    _b64("v1:-5"),
    _b64("v1:+5"),
    _b64("v1:007"),
    _b64("v1: 7"),
    _b64("v1:7 "),
    _b64("v1:7\n"),
    _b64("v1:٣"),  # an Arabic-Indic digit: int() accepts it, we do not
    _b64("v1:1_000"),
    _b64("v2:7"),
    _b64("7"),
    _b64("v1:"),
    _b64("v1:7", pad=True),  # padded: not what we issue
    "!!!",
    "djE6Nw==",  # standard base64 with padding
    "a",
    "v1:7",
    "\u00e9t\u00e9",
    "A" * 41,
]


@pytest.mark.parametrize("cursor", FORGED)
def test_forged_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(ApiError) as caught:
        decode_cursor(cursor)
    assert (caught.value.status, caught.value.error, caught.value.field) == (400, "INVALID_CURSOR", "cursor")


@given(st.integers(min_value=1, max_value=MAX_ID))
def test_issued_cursors_round_trip(last_id: int) -> None:
    assert decode_cursor(encode_cursor(last_id)) == last_id


@given(st.text(max_size=60))
def test_any_text_is_a_valid_cursor_or_invalid_cursor(text: str) -> None:
    try:
        value = decode_cursor(text)
    except ApiError as exc:
        assert exc.error == "INVALID_CURSOR"
    else:
        assert value is None or (1 <= value <= MAX_ID and encode_cursor(value) == text)


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"], indirect=True)
async def test_every_paged_endpoint_refuses_forged_cursors(harness: Harness, admin: dict[str, str]) -> None:
    for path in ("/v1/api/leads", "/v1/api/audit", "/v1/api/jobs"):
        for cursor in FORGED[:6]:
            response = await harness.client.get(path, headers=admin, params={"cursor": cursor})
            assert response.status_code == 400, (path, cursor, response.text)
            assert response.json()["error"] == "INVALID_CURSOR"
        # The largest id we could ever issue is a valid (empty) page, not a database error.
        response = await harness.client.get(path, headers=admin, params={"cursor": encode_cursor(MAX_ID)})
        assert response.status_code == 200, (path, response.text)
