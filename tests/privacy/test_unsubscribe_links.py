"""The unsubscribe link's token (pure): signed, expiring, verifiable after a key rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadflow.privacy.unsubscribe import LinkError, list_unsubscribe_headers, make_token, read_token

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
KEY = bytes(range(32))
OLD_KEY = bytes(range(1, 33))
LEAD = "lead_0123456789ab"


def test_round_trip_and_expiry() -> None:
    token = make_token(KEY, LEAD, NOW + timedelta(days=60))
    link = read_token([KEY], token, NOW)
    assert link.lead_id == LEAD and link.expires == NOW + timedelta(days=60)
    assert len(link.token_hash) == 64
    with pytest.raises(LinkError) as caught:
        read_token([KEY], token, NOW + timedelta(days=60))
    assert caught.value.reason == "expired"
    # Two links for the same lead differ (nonce), so using one leaves the other usable.
    assert make_token(KEY, LEAD, NOW) != make_token(KEY, LEAD, NOW)


def test_keys_rotated_into_old_keys_still_verify() -> None:
    token = make_token(OLD_KEY, LEAD, NOW + timedelta(days=1))
    assert read_token([KEY, OLD_KEY], token, NOW).lead_id == LEAD
    with pytest.raises(LinkError):
        read_token([KEY], token, NOW)


@given(position=st.integers(min_value=0, max_value=200), char=st.sampled_from("AZaz09_-.x"))
def test_any_changed_character_is_refused(position: int, char: str) -> None:
    token = make_token(KEY, LEAD, NOW + timedelta(days=1), nonce="Zm9vYmFyYmF6")
    index = position % len(token)
    if token[index] == char:
        return
    forged = token[:index] + char + token[index + 1 :]
    with pytest.raises(LinkError) as caught:
        read_token([KEY], forged, NOW)
    assert caught.value.reason == "invalid"  # the signature is checked before the expiry


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\x00"])
def test_a_token_with_anything_appended_is_invalid(suffix: str) -> None:
    token = make_token(KEY, LEAD, NOW + timedelta(days=1))
    with pytest.raises(LinkError) as caught:
        read_token([KEY], token + suffix, NOW)
    assert caught.value.reason == "invalid"


def test_headers_are_rfc_8058() -> None:
    headers = list_unsubscribe_headers("https://x.test/v1/unsubscribe/t", mailto="noreply@x.test")
    assert headers == {
        "List-Unsubscribe": "<https://x.test/v1/unsubscribe/t>, <mailto:noreply@x.test?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
