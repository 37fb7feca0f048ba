"""Sanitising and normalising free text and contact data from untrusted forms."""

from __future__ import annotations

import html
import ipaddress
import re
import unicodedata

import nh3
import phonenumbers
from email_validator import EmailNotValidError, validate_email

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACES = re.compile(r"\s+")
_BLOCK_END = re.compile(r"<\s*(?:br|hr)\s*/?\s*>|</\s*(?:p|div|li|h[1-6]|tr|td|th|blockquote|pre)\s*>", re.I)
_MULTI_BLANK = re.compile(r"\n{3,}")


def strip_html(value: str, block_separator: str = " ") -> str:
    """Plain text from text that may hold HTML: no tags, no script/style content, entities decoded.

    Block ends (``<br>``, ``</p>``...) become ``block_separator`` so words do not run together.
    Decoding entities can reveal markup that was encoded (``&lt;b&gt;``); that is stripped too, until
    the text is stable, so the result never contains a tag.
    """
    for _ in range(4):
        if "<" not in value and "&" not in value:
            return value
        # nh3 (ammonia) removes every tag and the content of script/style; its output is escaped.
        cleaned = html.unescape(nh3.clean(_BLOCK_END.sub(block_separator, value), tags=set()))
        if cleaned == value:
            return cleaned
        value = cleaned
    return value.replace("<", "").replace(">", "")


def clean_line(value: str | None) -> str | None:
    """One line of text: no HTML, no control characters, whitespace collapsed, trimmed."""
    if value is None:
        return None
    text = unicodedata.normalize("NFC", strip_html(value))
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text).strip()
    return text or None


def clean_text(value: str | None) -> str | None:
    """Multi-line text (a message): like :func:`clean_line` but keeps single line breaks."""
    if value is None:
        return None
    text = unicodedata.normalize("NFC", strip_html(value, "\n")).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = [" ".join(line.split()) for line in text.split("\n")]
    text = _MULTI_BLANK.sub("\n\n", "\n".join(lines)).strip()
    return text or None


def normalise_email(value: str) -> str:
    """Syntax check (no DNS) and normal form: local part as given, domain lower-cased (IDNA)."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError("Invalid email format") from exc
    return f"{result.local_part}@{result.domain.lower()}"


def email_index_form(email: str) -> str:
    """The form used for the blind index and de-duplication: the whole address case-folded."""
    return email.strip().casefold()


def normalise_phone(value: str, default_region: str) -> str:
    """E.164 form of a possible phone number; numbers without +country use ``default_region``."""
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("Invalid phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError("Invalid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError as exc:
        raise ValueError("Invalid IP address") from exc
