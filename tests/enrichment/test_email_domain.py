"""E-mail domain normal form and classification (enrichment/email_domain.py)."""

from __future__ import annotations

import pytest

from leadflow.enrichment.email_domain import classify_domain, normalise_domain


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("acme-corp.com", "acme-corp.com"),
        ("Acme-Corp.COM.", "acme-corp.com"),
        ("  acme.co.uk ", "acme.co.uk"),
        ("mail.acme-corp.com", "mail.acme-corp.com"),
        ("bücher.de", "bücher.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("a1.io", "a1.io"),
    ],
)
def test_normalise_domain_accepts(raw: str, expected: str) -> None:
    assert normalise_domain(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        ".",
        "localhost",
        "com",
        ".com",
        "acme..com",
        "-acme.com",
        "acme-.com",
        "ac me.com",
        "acme_corp.com",
        "john.doe@acme-corp.com",
        "1.2.3.4",
        "[1.2.3.4]",
        "a" * 64 + ".com",
        ("a" * 60 + ".") * 5 + "com",
        "acme.com/path",
        "acme.com\x00",
    ],
)
def test_normalise_domain_rejects(raw: str) -> None:
    assert normalise_domain(raw) is None


def test_normalise_domain_rejects_non_strings() -> None:
    assert normalise_domain(None) is None  # type: ignore[arg-type]
    assert normalise_domain(b"acme.com") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("domain", "kind"),
    [
        ("acme-corp.com", "business"),
        ("gmail.com", "free"),
        ("GMAIL.COM", "free"),
        ("yahoo.co.uk", "free"),
        ("mailinator.com", "disposable"),
        ("mail.mailinator.com", "disposable"),
    ],
)
def test_classify_domain(domain: str, kind: str) -> None:
    assert classify_domain(domain) == kind
