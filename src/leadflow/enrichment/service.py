"""The enrichment step the worker runs after capture: GeoIP, e-mail domain, company guess, MX check.

``Enricher.enrich`` never raises (except for cancellation): each part records an ``EnrichmentStep``
with status ``ok`` / ``skipped`` / ``failed`` and a short detail that never holds personal data (no
e-mail address, domain or IP address). The whole call stays well inside the 5 s budget: GeoIP is an
in-memory lookup and DNS runs under ``DNS_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import structlog

from leadflow.config import Settings
from leadflow.enrichment.company import guess_company_name
from leadflow.enrichment.dns import BAD_DOMAIN, DISABLED, MxChecker, MxOutcome
from leadflow.enrichment.email_domain import EmailKind, classify_domain, normalise_domain
from leadflow.enrichment.geoip import GeoInfo, GeoIPReader, GeoLookup

__all__ = ["Enricher", "EnrichmentResult", "EnrichmentStep", "GeoInfo"]

log = structlog.get_logger("leadflow.enrichment")

INVALID_DOMAIN = "invalid domain"
KIND_DETAIL: dict[EmailKind, str] = {
    "business": "business domain",
    "free": "free-mail domain",
    "disposable": "disposable domain",
}


@dataclass(frozen=True, slots=True)
class EnrichmentStep:
    name: str  # "geoip" | "email_domain" | "company" | "mx"
    status: str  # "ok" | "skipped" | "failed"
    detail: str  # short, no personal data (never the e-mail address, domain or IP)


@dataclass(frozen=True, slots=True)
class EnrichmentResult:
    email_kind: str  # "business" | "free" | "disposable"
    company_domain: str | None  # the e-mail domain for business addresses, else None
    company_name_guess: str | None  # "acme-corp.com" -> "Acme Corp"; None for free/disposable
    mx: str  # "valid" | "invalid" | "unknown" | "skipped"
    geo: GeoInfo | None
    steps: tuple[EnrichmentStep, ...]

    def as_json(self) -> dict[str, Any]:
        """Everything, as plain JSON types (stored in ``leads.enrichment``)."""
        geo = None if self.geo is None else {f.name: getattr(self.geo, f.name) for f in fields(self.geo)}
        return {
            "email_kind": self.email_kind,
            "company_domain": self.company_domain,
            "company_name_guess": self.company_name_guess,
            "mx": self.mx,
            "geo": geo,
            "steps": [{"name": s.name, "status": s.status, "detail": s.detail} for s in self.steps],
        }

    def step(self, name: str) -> EnrichmentStep | None:
        return next((s for s in self.steps if s.name == name), None)


def _internal_error(name: str, exc: Exception) -> EnrichmentStep:
    # Only the exception's type: its message may quote the input (an address or a domain).
    log.error("enrichment_step_error", step=name, error=type(exc).__name__)
    return EnrichmentStep(name, "failed", f"internal error {type(exc).__name__}")


@dataclass(frozen=True, slots=True)
class _DomainFacts:
    domain: str | None  # normalised, None when invalid
    kind: EmailKind
    step: EnrichmentStep


class Enricher:
    """One per worker process: opens the GeoIP database and builds the DNS resolver once."""

    def __init__(self, settings: Settings) -> None:
        self._geoip = GeoIPReader(settings.geoip_city_db)
        self._mx: MxChecker | None = None
        if settings.mx_check:
            self._mx = MxChecker(nameservers=settings.dns_nameservers, timeout=settings.dns_timeout_seconds)

    async def enrich(self, *, email_domain: str, ip: str | None) -> EnrichmentResult:
        geo, geo_step = self._geo(ip)
        facts = self._domain(email_domain)
        business = facts.domain is not None and facts.kind == "business"
        company_domain = facts.domain if business else None
        guess, company_step = self._company(facts)
        mx, mx_step = await self._mx_check(facts.domain)
        return EnrichmentResult(
            email_kind=facts.kind,
            company_domain=company_domain,
            company_name_guess=guess,
            mx=mx,
            geo=geo,
            steps=(geo_step, facts.step, company_step, mx_step),
        )

    def close(self) -> None:
        self._geoip.close()

    # --- steps -----------------------------------------------------------------------------------

    def _geo(self, ip: str | None) -> tuple[GeoInfo | None, EnrichmentStep]:
        try:
            found: GeoLookup = self._geoip.lookup(ip)
        except Exception as exc:
            return None, _internal_error("geoip", exc)
        return found.geo, EnrichmentStep("geoip", found.status, found.detail)

    def _domain(self, email_domain: str) -> _DomainFacts:
        try:
            domain = normalise_domain(email_domain)
            if domain is None:
                # A domain that cannot exist earns no credit: scored like a throwaway address.
                return _DomainFacts(
                    None, "disposable", EnrichmentStep("email_domain", "failed", INVALID_DOMAIN)
                )
            kind = classify_domain(domain)
        except Exception as exc:
            return _DomainFacts(None, "disposable", _internal_error("email_domain", exc))
        return _DomainFacts(domain, kind, EnrichmentStep("email_domain", "ok", KIND_DETAIL[kind]))

    def _company(self, facts: _DomainFacts) -> tuple[str | None, EnrichmentStep]:
        if facts.domain is None:
            return None, EnrichmentStep("company", "skipped", INVALID_DOMAIN)
        if facts.kind != "business":
            return None, EnrichmentStep("company", "skipped", KIND_DETAIL[facts.kind])
        try:
            guess = guess_company_name(facts.domain)
        except Exception as exc:
            return None, _internal_error("company", exc)
        if guess is None:
            return None, EnrichmentStep("company", "skipped", "no organisation label in domain")
        return guess, EnrichmentStep("company", "ok", "name guessed from domain")

    async def _mx_check(self, domain: str | None) -> tuple[str, EnrichmentStep]:
        outcome: MxOutcome
        if self._mx is None:
            outcome = DISABLED
        elif domain is None:
            outcome = BAD_DOMAIN
        else:
            try:
                outcome = await self._mx.check(domain)
            except Exception as exc:
                return "unknown", _internal_error("mx", exc)
        return outcome.verdict, EnrichmentStep("mx", outcome.status, outcome.detail)
