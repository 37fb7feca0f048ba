"""Unit tests for form-input sanitising (kit/text.py) and e-mail domain classification."""

from __future__ import annotations

import ipaddress
import re
import sys
import unicodedata
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.enrichment.email_domain import classify_domain
from leadflow.kit import text as text_module
from leadflow.kit.text import (
    clean_line,
    clean_text,
    email_index_form,
    normalise_email,
    normalise_ip,
    normalise_phone,
    strip_html,
)

# Characters clean_line/clean_text promise to remove: C0 (except tab/newline/CR), DEL, C1, the
# Unicode line/paragraph separators, and the blank look-alikes (Hangul fillers, blank Braille).
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u115f\u1160\u3164\uffa0\u2800]")
ZWNJ, ZWJ = "\u200c", "\u200d"


def _letter_or_mark(char: str) -> bool:
    return unicodedata.category(char)[0] in "LM"


def assert_no_invisible(result: str) -> None:
    """No control or format character, nor a lone surrogate; ZWNJ/ZWJ only between letters or marks."""
    assert not CONTROL.search(result)
    for i, char in enumerate(result):
        category = unicodedata.category(char)
        assert category != "Cs", repr(result)
        if char in (ZWNJ, ZWJ):
            assert 0 < i < len(result) - 1, repr(result)
            assert _letter_or_mark(result[i - 1]) and _letter_or_mark(result[i + 1]), repr(result)
        else:
            assert category != "Cf", repr(result)


# --- clean_line: HTML ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<b>bold</b> text", "bold text"),
        ("<p>one</p>\n<p>two</p>", "one two"),
        ("<script>alert(1)</script>hello", "hello"),
        ("<SCRIPT type='text/javascript'>evil()</SCRIPT>Hi", "Hi"),
        ("before<script>var a = '<b>x</b>';</script>after", "beforeafter"),
        ("<style>p { color: red }</style>ok", "ok"),
        ("<!-- comment -->ok", "ok"),
        ("<a href='javascript:alert(1)'>link</a>", "link"),
        ("<img src=x onerror=alert(1)>", None),
        ("<br>", None),
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("AT&T", "AT&T"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("a&nbsp;&nbsp;b", "a b"),
    ],
)
def test_clean_line_strips_html(value: str, expected: str | None) -> None:
    assert clean_line(value) == expected


def test_block_ends_separate_words() -> None:
    assert clean_line("<p>Hi</p><p>there</p>") == "Hi there"
    assert clean_text("a<br>b") == "a\nb"


def test_strip_html_leaves_plain_text_alone() -> None:
    assert strip_html("plain text, no markup") == "plain text, no markup"
    assert strip_html("<i>x</i>") == "x"


def test_clean_line_does_not_turn_entities_into_tags() -> None:
    result = clean_line("&lt;script&gt;alert(1)&lt;/script&gt;")
    assert result is None or "<script" not in result.lower()


def test_clean_line_is_idempotent_on_encoded_markup() -> None:
    once = clean_line("&lt;b&gt;hi&lt;/b&gt;")
    assert clean_line(once) == once


# --- clean_line: control characters and whitespace ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\x00b", "ab"),
        ("a\x07b\x1bc", "abc"),
        ("a\x7fb", "ab"),
        ("x\x85y\x9fz", "xyz"),
        ("a\u200bb\u200fc", "abc"),
        ("\ufeffBOM", "BOM"),
        ("a\u2028b", "ab"),
        ("<b>a\x00b</b>", "ab"),
        ("&#x1b;x", "x"),
        ("  Jane  ", "Jane"),
        ("Jane \t\t Doe", "Jane Doe"),
        ("Jane\r\nDoe", "Jane Doe"),
        ("Jane\nDoe\n", "Jane Doe"),
        ("Jane\u00a0\u00a0Doe", "Jane Doe"),
        ("e\u0301", "\u00e9"),  # NFC
        ("", None),
        ("   ", None),
        ("\x00\u200b", None),
        (None, None),
        # Bidirectional controls (the attack: "Ana\u202egnp.exe" displays as "Anaexe.png").
        ("Ana\u202egnp.exe", "Anagnp.exe"),
        ("\u202aA\u202bB\u202cC\u202dD\u202eE", "ABCDE"),
        ("\u2066A\u2067B\u2068C\u2069D", "ABCD"),
        ("\u200eLRM\u200f\u061c", "LRM"),
        # Other invisible format characters and blank look-alikes.
        ("soft\u00adhyphen", "softhyphen"),
        ("word\u2060joiner\u2062", "wordjoiner"),
        ("tag\U000e0041\U000e007f", "tag"),
        ("\u3164", None),
        ("Kim\u115f\u1160", "Kim"),
        ("\u2800Bob\uffa0", "Bob"),
        ("lone\ud800surrogate", "lonesurrogate"),
        # ZWNJ/ZWJ: kept between letters or marks (Persian, Devanagari), removed anywhere else.
        ("\u0645\u06cc\u200c\u0631\u0636\u0627", "\u0645\u06cc\u200c\u0631\u0636\u0627"),  # Persian
        ("\u0915\u094d\u200d\u0937", "\u0915\u094d\u200d\u0937"),  # Devanagari half form (virama)
        ("\u200cAna\u200d", "Ana"),
        ("Ana \u200d Bob", "Ana Bob"),
        ("1\u200c2", "12"),
        ("A\u200d\u200dB", "AB"),
        ("A\u202e\u200cB", "A\u200cB"),  # the joiner's neighbours are judged after the rest is removed
    ],
)
def test_clean_line_control_and_whitespace(value: str | None, expected: str | None) -> None:
    assert clean_line(value) == expected


def test_the_format_table_is_unicode_category_cf() -> None:
    """kit.text lists the Cf characters of the Unicode version Python ships; it must stay complete."""
    from leadflow.kit import text

    table = set(re.findall(f"[{text._FORMAT}{text._JOINERS}]", "".join(map(chr, range(sys.maxunicode + 1)))))
    category_cf = {chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    assert table == category_cf


TRICKY = list("aZ9 \t\n\u0645\u06cc\u094d\u0301\u200c\u200d\u202e\u2066\u2069\u200f\u00ad\u3164\ufeff")


@given(st.text(alphabet=st.sampled_from(TRICKY), max_size=40))
def test_invisible_rule_properties(value: str) -> None:
    for clean in (clean_line, clean_text):
        result = clean(value)
        if result is not None:
            assert_no_invisible(result)
            assert clean(result) == result


def test_bidi_controls_are_removed_from_messages() -> None:
    assert clean_text("invoice\u202efdp.exe\nline two\u2066x\u2069") == "invoicefdp.exe\nline twox"


def test_clean_line_collapses_unicode_whitespace() -> None:
    assert clean_line("a\u2003\u2003b") == "a b"


@given(st.text(max_size=200))
def test_clean_line_properties(value: str) -> None:
    result = clean_line(value)
    if result is None:
        return
    assert result
    assert result == result.strip()
    assert_no_invisible(result)
    assert not re.search(r"[\t\n\r\f\v\u00a0]", result)
    assert "  " not in result


@given(st.text(alphabet=st.characters(exclude_characters="<&"), max_size=100))
def test_clean_line_without_markup_is_idempotent(value: str) -> None:
    once = clean_line(value)
    assert clean_line(once) == once


# --- clean_text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("line one\nline two", "line one\nline two"),
        ("line1\r\nline2\rline3", "line1\nline2\nline3"),
        ("  a   b  \n  c  ", "a b\nc"),
        ("a\n\n\n\n\nb", "a\n\nb"),
        ("a\n   \n \t \n\nb", "a\n\nb"),
        ("a\n\nb", "a\n\nb"),
        ("\n\nhello\n\n", "hello"),
        ("<p>one</p>\n<p>two</p>", "one\n\ntwo"),  # a paragraph end is a blank line
        ("Hi<script>alert(1)</script>\nthere", "Hi\nthere"),
        ("a\x00b\u200b\nc", "ab\nc"),
        ("a\u2003\u2003b", "a b"),
        ("", None),
        ("\n \n", None),
        (None, None),
    ],
)
def test_clean_text(value: str | None, expected: str | None) -> None:
    assert clean_text(value) == expected


@given(st.text(max_size=200))
def test_clean_text_properties(value: str) -> None:
    result = clean_text(value)
    if result is None:
        return
    assert result == result.strip()
    assert "\r" not in result
    assert "\n\n\n" not in result
    assert_no_invisible(result)
    for line in result.split("\n"):
        assert line == " ".join(line.split())


# --- e-mail -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("john@example.com", "john@example.com"),
        ("John.Doe@Company.COM", "John.Doe@company.com"),
        ("USER@GMAIL.COM", "USER@gmail.com"),
        ("  jane@company.com  ", "jane@company.com"),
        ("First.Last+Tag@Sub.Company.co.uk", "First.Last+Tag@sub.company.co.uk"),
        ("user@B\u00fccher.DE", "user@b\u00fccher.de"),
    ],
)
def test_normalise_email(value: str, expected: str) -> None:
    assert normalise_email(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "not-an-email",
        "@company.com",
        "john@",
        "john@@company.com",
        "john doe@company.com",
        "john@company",
        "john@localhost",
        "john@company..com",
        "john@-company.com",
        "john@company.com.",
        "john.@company.com",
    ],
)
def test_normalise_email_rejects_invalid(value: str) -> None:
    with pytest.raises(ValueError, match="Invalid email format"):
        normalise_email(value)


_ASCII = "".join(chr(c) for c in range(0x00, 0x80))


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(_ASCII + "  \u00e9\u200b\u202e"), max_size=40))
def test_plain_ascii_fast_path_cleans_like_the_full_path(value: str) -> None:
    """Printable ASCII without < or & skips stripping and normalising: same result either way."""
    assert clean_line(value) == text_module._clean_line(value)
    assert clean_text(value) == text_module._clean_text(value)


def _library_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


@settings(max_examples=500)
@given(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.lists(st.text(alphabet="0123456789", min_size=0, max_size=4), min_size=1, max_size=5).map(
            ".".join
        ),
        st.text(alphabet="0123456789.:abf \u0660\u00b2", max_size=20),
    )
)
def test_canonical_ipv4_fast_path_agrees_with_ipaddress(value: str) -> None:
    _same_answer(normalise_ip, value, _library_ip(value), "Invalid IP address")


def _same_answer(function: Callable[[str], str], value: str, expected: str | None, error: str) -> None:
    """``function`` answers ``expected``, or refuses with ``error`` where the library refuses."""
    if expected is None:
        with pytest.raises(ValueError, match=error):
            function(value)
    else:
        assert function(value) == expected


def _library_email(value: str) -> str | None:
    """email-validator alone, on the whole address: what normalise_email's fast path must match."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    return f"{result.local_part}@{result.domain.lower()}"


_ATOM = "abcXYZ019_!#$%&'*+-/=?^`{|}~"
_HOST = "abcXYZ019-."


@settings(max_examples=400)
@given(
    local=st.text(alphabet=_ATOM + '."@ (', min_size=0, max_size=70),
    domain=st.one_of(
        st.text(alphabet=_HOST, min_size=0, max_size=30),
        st.lists(st.text(alphabet="abcXYZ019-", min_size=0, max_size=64), min_size=1, max_size=5).map(
            ".".join
        ),
        st.sampled_from(
            ["example.com", "test", "localhost", "x.test", "a.invalid", "xn--bcher-kva.de", "1.2.3.4"]
        ),
    ),
    role=st.sampled_from(["", "info", "Sales", "POSTMASTER"]),
)
def test_normalise_email_agrees_with_email_validator(local: str, domain: str, role: str) -> None:
    """The plain-address fast path answers exactly what email-validator answers for the whole address."""
    value = f"{role or local}@{domain}"
    _same_answer(normalise_email, value, _library_email(value), "Invalid email format")


def test_normalise_email_long_addresses_agree_with_email_validator() -> None:
    for local_length in (63, 64, 65, 200):
        for domain in (
            "a" * 60 + ".com",
            ".".join(["b" * 63] * 3) + ".com",
            ".".join(["c" * 50] * 4) + ".org",
        ):
            value = f"{'x' * local_length}@{domain}"
            _same_answer(normalise_email, value, _library_email(value), "Invalid email format")


def test_email_index_form() -> None:
    assert email_index_form("  John.Doe@Company.COM ") == "john.doe@company.com"
    assert email_index_form("STRASSE@EXAMPLE.COM") == email_index_form("strasse@example.com")


# --- phone --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("+1-555-123-4567", "US", "+15551234567"),
        ("+1-555-123-4567", "GB", "+15551234567"),  # explicit country code wins over the region
        ("+1 (202) 555-0143", "US", "+12025550143"),
        ("(202) 555-0143", "US", "+12025550143"),
        ("202.555.0143", "US", "+12025550143"),
        ("+1 202 555 0143 ext. 12", "US", "+12025550143"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("030 123456", "DE", "+4930123456"),
        ("0049 30 123456", "DE", "+4930123456"),
    ],
)
def test_normalise_phone(value: str, region: str, expected: str) -> None:
    assert normalise_phone(value, region) == expected


@pytest.mark.parametrize(
    ("value", "region"),
    [
        ("123", "US"),
        ("+1 123", "US"),
        ("12345678901234567890", "US"),
        ("abc", "US"),
        ("", "US"),
        ("   ", "US"),
        ("2025550143", "ZZ"),  # no country code and no usable default region
    ],
)
def test_normalise_phone_rejects_impossible_numbers(value: str, region: str) -> None:
    with pytest.raises(ValueError, match="Invalid phone number"):
        normalise_phone(value, region)


# --- IP -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("192.168.1.1", "192.168.1.1"),
        ("  10.0.0.1  ", "10.0.0.1"),
        ("0.0.0.0", "0.0.0.0"),
        ("255.255.255.255", "255.255.255.255"),
        ("2001:DB8::1", "2001:db8::1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("::1", "::1"),
        ("FE80:0:0:0:0:0:0:1", "fe80::1"),
    ],
)
def test_normalise_ip(value: str, expected: str) -> None:
    assert normalise_ip(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "192.168.001.001",
        "1.2.3.4/24",
        "2001:db8::1::2",
        "2001:db8:::1",
        "gggg::1",
        "example.com",
    ],
)
def test_normalise_ip_rejects_garbage(value: str) -> None:
    with pytest.raises(ValueError, match="Invalid IP address"):
        normalise_ip(value)


@given(st.ip_addresses())
def test_normalise_ip_round_trips(address: IPv4Address | IPv6Address) -> None:
    text = str(address)
    assert normalise_ip(text) == text
    assert normalise_ip(text.upper()) == text


# --- e-mail domain kind -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("gmail.com", "free"),
        ("GMAIL.COM", "free"),
        ("gmail.com.", "free"),
        ("yahoo.com", "free"),
        ("outlook.com", "free"),
        ("hotmail.com", "free"),
        ("protonmail.com", "free"),
        ("mailinator.com", "disposable"),  # on both lists: disposable wins
        ("MAILINATOR.COM", "disposable"),
        ("sub.mailinator.com", "disposable"),
        ("a.b.mailinator.com", "disposable"),
        ("guerrillamail.com", "disposable"),
        ("yopmail.com", "disposable"),
        ("company.com", "business"),
        ("mail.company.com", "business"),
        ("nexlink.website", "business"),
        ("acme.io", "business"),
        # a name that merely ends like a listed domain is not a sub-domain of it
        ("leadflowtestmailinator.com", "business"),
        ("leadflowtestgmail.com", "business"),
        ("mygmail.com.example", "business"),
    ],
)
def test_classify_domain(domain: str, expected: str) -> None:
    assert classify_domain(domain) == expected
