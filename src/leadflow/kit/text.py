"""Sanitising and normalising free text and contact data from untrusted forms."""

from __future__ import annotations

import html
import ipaddress
import re
import unicodedata
from functools import lru_cache

import nh3
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import ATEXT, CASE_INSENSITIVE_MAILBOX_NAMES

# Invisible characters removed from every text field (single-line fields and messages):
# * control characters (Unicode category Cc) other than tab, LF and CR, which are whitespace (collapsed
#   to one space; single line breaks are kept in messages);
# * every format character (category Cf, Unicode 14, the table below): the bidirectional embeddings,
#   overrides and isolates U+202A-U+202E and U+2066-U+2069 that make "Ana\u202egnp.exe" display as
#   "Anaexe.png", the marks U+200E/U+200F/U+061C, zero-width space U+200B, word joiner and invisible
#   operators U+2060-U+2064, soft hyphen U+00AD, BOM U+FEFF, tag characters U+E0000-U+E007F, ...;
# * line and paragraph separators U+2028/U+2029 (categories Zl/Zp) and lone surrogates (Cs: they are
#   not text and cannot be stored);
# * the Hangul fillers U+115F, U+1160, U+3164, U+FFA0 and the blank Braille pattern U+2800, letters and
#   symbols that show as nothing and are used to fake empty or look-alike names.
# Kept: ZERO WIDTH NON-JOINER U+200C and ZERO WIDTH JOINER U+200D *between two letters or marks*,
# where Persian, Kurdish, Urdu and the Indic scripts need them to spell a name right (e.g. Persian
# names with a ZWNJ, Malayalam/Devanagari conjuncts); anywhere else they are removed too.
# test_text.py checks this table against Python's unicodedata.
_FORMAT = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_INVISIBLE = "\u115f\u1160\u3164\uffa0\u2800\u2028\u2029\ud800-\udfff"
_JOINERS = "\u200c\u200d"  # the two format characters not in _FORMAT: see _keep_joiners
_CONTROL = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f{_FORMAT}{_INVISIBLE}]")
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


def _letter_or_mark(char: str) -> bool:
    return unicodedata.category(char)[0] in "LM"


def _keep_joiners(text: str) -> str:
    """ZWNJ/ZWJ stay only between two letters or marks (Persian ZWNJ, Indic virama + ZWJ)."""
    last = len(text) - 1
    return "".join(
        char
        for i, char in enumerate(text)
        if char not in _JOINERS
        or (0 < i < last and _letter_or_mark(text[i - 1]) and _letter_or_mark(text[i + 1]))
    )


def strip_invisible(text: str) -> str:
    """Remove the invisible characters listed above, then NFC."""
    text = _CONTROL.sub("", text)
    if "\u200c" in text or "\u200d" in text:
        text = _keep_joiners(text)
    return unicodedata.normalize("NFC", text)


def _plain(value: str) -> bool:
    """Printable ASCII without ``<`` or ``&``: nothing to strip, decode or normalise (no tag or
    entity, no control or format character, NFC of ASCII is itself, the only space is U+0020)."""
    return value.isascii() and value.isprintable() and "<" not in value and "&" not in value


def clean_line(value: str | None) -> str | None:
    """One line of text: no HTML, no invisible characters, whitespace collapsed, trimmed."""
    if value is None:
        return None
    if _plain(value):  # the common form field: only the spaces to collapse
        return " ".join(value.split()) or None
    return _clean_line(value)


def _clean_line(value: str) -> str | None:
    text = strip_invisible(strip_html(value))
    text = _SPACES.sub(" ", text).strip()
    return text or None


def clean_text(value: str | None) -> str | None:
    """Multi-line text (a message): like :func:`clean_line` but keeps single line breaks."""
    if value is None:
        return None
    if _plain(value):  # one line (no CR or LF), nothing to strip
        return " ".join(value.split()) or None
    return _clean_text(value)


def _clean_text(value: str) -> str | None:
    text = strip_html(value, "\n").replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(strip_invisible(line) for line in text.split("\n"))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    text = _MULTI_BLANK.sub("\n\n", "\n".join(lines)).strip()
    return text or None


# The common address: an unquoted ASCII dot-atom local part (RFC 5322 atext, email-validator's own
# character class) and an ASCII host name. Everything else goes to email-validator as a whole.
_PLAIN_EMAIL = re.compile(rf"([{ATEXT}]+(?:\.[{ATEXT}]+)*)@([A-Za-z0-9.\-]+)")
# Local parts email-validator lower-cases (RFC 2142 role mailboxes): left to the library.
_ROLE_MAILBOXES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


@lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> str | None:
    """email-validator's verdict on a domain alone (memoised; domains are stored in clear anyway):
    its lower-cased normal form, or None when the library refuses it."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain.lower()
    except EmailNotValidError:
        return None


def normalise_email(value: str) -> str:
    """Syntax check (no DNS) and normal form: local part as given, domain lower-cased (IDNA).

    email-validator decides. A plain ASCII address (dot-atom local part of at most 64 characters,
    not a role mailbox, at most 254 in all) is split here and only its domain is validated, once
    per domain: the library accepts such a local part as it is, and the rest of its work is the
    domain's. test_text.py checks both paths give the same answer on generated addresses.
    """
    value = value.strip()
    match = _PLAIN_EMAIL.fullmatch(value)
    if match is not None and len(value) <= 254:
        local, domain = match.groups()
        if len(local) <= 64 and local.lower() not in _ROLE_MAILBOXES:
            normal = _plain_domain(domain)
            if normal is not None:
                return f"{local}@{normal}"
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError("Invalid email format") from exc
    return f"{result.local_part}@{result.domain.lower()}"


def email_index_form(email: str) -> str:
    """The form used for the blind index and de-duplication: the whole address case-folded."""
    return email.strip().casefold()


def phone_index_form(phone: str) -> str:
    """The form of an E.164 phone number for its blind index (prefixed: never equal to an e-mail's)."""
    return "phone:" + phone


def normalise_phone(value: str, default_region: str) -> str:
    """E.164 form of a possible phone number; numbers without +country use ``default_region``."""
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("Invalid phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError("Invalid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def normalise_ip(value: str) -> str:
    value = value.strip()
    if _CANONICAL_IPV4.fullmatch(value):  # already ipaddress's own text form (no leading zeros)
        return value
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError as exc:
        raise ValueError("Invalid IP address") from exc
