"""Company name guessed from a business domain (enrichment/company.py)."""

from __future__ import annotations

import pytest

from leadflow.enrichment.company import guess_company_name, organisation_label, split_public_suffix


@pytest.mark.parametrize(
    ("domain", "name"),
    [
        ("acme-corp.com", "Acme Corp"),
        ("mail.acme-corp.com", "Acme Corp"),
        ("www.acme-corp.com", "Acme Corp"),
        ("eu.mail.globex.de", "Globex"),
        ("initech.io", "Initech"),
        ("acme.co.uk", "Acme"),
        ("mail.acme.co.uk", "Acme"),
        ("acme.com.au", "Acme"),
        ("stark-industries.co.jp", "Stark Industries"),
        ("acme--corp.com", "Acme Corp"),
        ("acme_corp.com", "Acme Corp"),
        ("widgets-gmbh.de", "Widgets GmbH"),
        ("umbrella-llc.com", "Umbrella LLC"),
        ("3m.com", "3m"),
        ("bücher.de", "Bücher"),
        ("xn--bcher-kva.de", "Bücher"),
        ("ACME-Corp.COM.", "Acme Corp"),
    ],
)
def test_guess_company_name(domain: str, name: str) -> None:
    assert guess_company_name(domain) == name


@pytest.mark.parametrize("domain", ["co.uk", "com", "", ".", "-.com", "xn--a.com"])
def test_no_guess_without_an_organisation_label(domain: str) -> None:
    assert guess_company_name(domain) is None


@pytest.mark.parametrize(
    ("domain", "head", "suffix"),
    [
        ("acme.com", ["acme"], ["com"]),
        ("mail.acme.co.uk", ["mail", "acme"], ["co", "uk"]),
        ("acme.com.br", ["acme"], ["com", "br"]),
        # a two-letter TLD after an ordinary label is a one-label suffix
        ("acme.de", ["acme"], ["de"]),
        ("co.acme.de", ["co", "acme"], ["de"]),
        # a known second-level label under a generic TLD is not a suffix
        ("co.com", ["co"], ["com"]),
        ("co.uk", [], ["co", "uk"]),
        ("uk", [], ["uk"]),
        ("", [], []),
    ],
)
def test_split_public_suffix(domain: str, head: list[str], suffix: list[str]) -> None:
    assert split_public_suffix(domain) == (head, suffix)


def test_organisation_label() -> None:
    assert organisation_label("mail.acme-corp.com") == "acme-corp"
    assert organisation_label("xn--bcher-kva.de") == "bücher"
    assert organisation_label("co.uk") is None
