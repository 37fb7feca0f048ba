"""A company name guessed from a business e-mail domain: ``mail.acme-corp.co.uk`` -> ``Acme Corp``.

Deliberately simple: the public suffix is the last label, or the last two when a country-code
top-level domain is preceded by one of the usual second-level labels (``co.uk``, ``com.au``, ``co.jp``
...). The label just left of the suffix names the organisation, so host prefixes such as ``mail.``,
``www.`` or ``eu.`` fall away on their own. No network, no list download.
"""

from __future__ import annotations

# Second-level labels that registries put under a country code (``acme.co.uk``, ``acme.com.br``).
SECOND_LEVEL = frozenset(
    {
        "ac",
        "co",
        "com",
        "edu",
        "gen",
        "go",
        "gob",
        "gov",
        "govt",
        "gv",
        "ltd",
        "me",
        "mil",
        "ne",
        "net",
        "nhs",
        "nic",
        "nom",
        "or",
        "org",
        "plc",
        "sch",
    }
)

# Words a plain capitalisation would get wrong.
SPECIAL_WORDS = {"ag": "AG", "bv": "BV", "gmbh": "GmbH", "llc": "LLC", "nv": "NV", "plc": "PLC"}


def _is_country_code(label: str) -> bool:
    return len(label) == 2 and label.isascii() and label.isalpha()


def split_public_suffix(domain: str) -> tuple[list[str], list[str]]:
    """``(labels before the suffix, suffix labels)`` of a normalised domain."""
    labels = [label for label in domain.lower().strip(".").split(".") if label]
    size = 1
    if len(labels) >= 2 and _is_country_code(labels[-1]) and labels[-2] in SECOND_LEVEL:
        size = 2
    size = min(size, len(labels))
    return labels[: len(labels) - size], labels[len(labels) - size :]


def organisation_label(domain: str) -> str | None:
    """The label that names the organisation (``acme-corp`` for ``mail.acme-corp.com``), if any."""
    head, _ = split_public_suffix(domain)
    if not head:
        return None
    label = head[-1]
    if label.startswith("xn--"):
        try:
            label = label.encode("ascii").decode("idna")
        except UnicodeError:
            return None
    return label


def _word(word: str) -> str:
    return SPECIAL_WORDS.get(word, word[:1].upper() + word[1:])


def guess_company_name(domain: str) -> str | None:
    """``acme-corp.com`` -> ``Acme Corp``; ``None`` when the domain has no organisation label."""
    label = organisation_label(domain)
    if label is None:
        return None
    words = [w for w in label.replace("_", "-").split("-") if w]
    if not words:
        return None
    return " ".join(_word(w) for w in words)
