"""Which privacy regime applies to a lead: GDPR (EU/EEA/UK) or CCPA (California)."""

from __future__ import annotations

EU = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
    ]
)
EEA_EXTRA = frozenset({"IS", "LI", "NO"})
UK = frozenset({"GB"})
GDPR_COUNTRIES = EU | EEA_EXTRA | UK


def regime(country: str | None, region_code: str | None, in_eu: bool = False) -> str | None:
    """``gdpr``, ``ccpa`` or None. ``region_code`` is the subdivision without country ("CA")."""
    code = (country or "").upper()
    if in_eu or code in GDPR_COUNTRIES:
        return "gdpr"
    if code == "US" and (region_code or "").upper() == "CA":
        return "ccpa"
    return None
