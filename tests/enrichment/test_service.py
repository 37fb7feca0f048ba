"""The enrichment step as the worker calls it (enrichment/service.py)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow.config import Settings
from leadflow.enrichment import service
from leadflow.enrichment.service import Enricher, EnrichmentResult, EnrichmentStep, GeoInfo
from tests.enrichment.dns_server import DnsServer, closed_udp_port

LONDON = GeoInfo("GB", "United Kingdom", "ENG", "England", "London", "Europe/London", 51.5142, -0.0931, False)
GEO_OFF = EnrichmentStep("geoip", "skipped", "GeoIP database not configured")
MX_OFF = EnrichmentStep("mx", "skipped", "MX check disabled")


def make_settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "geoip_city_db": None,
        "mx_check": False,
        "dns_nameservers": [],
        "dns_timeout_seconds": 1.5,
    }
    base.update(values)
    return Settings(**base)


@pytest.fixture
def enricher_factory() -> Iterator[Callable[..., Enricher]]:
    made: list[Enricher] = []

    def make(**values: Any) -> Enricher:
        enricher = Enricher(make_settings(**values))
        made.append(enricher)
        return enricher

    yield make
    for enricher in made:
        enricher.close()


@pytest.fixture
def full(enricher_factory: Callable[..., Enricher], city_db: Path, dns_server: DnsServer) -> Enricher:
    """GeoIP on the MaxMind test database and MX checks against the local DNS server."""
    return enricher_factory(
        geoip_city_db=city_db, mx_check=True, dns_nameservers=[dns_server.address], dns_timeout_seconds=2.0
    )


@pytest.fixture
def mx_enricher(enricher_factory: Callable[..., Enricher], dns_server: DnsServer) -> Enricher:
    """MX checks against the local DNS server, GeoIP off (runs without the shared data)."""
    return enricher_factory(mx_check=True, dns_nameservers=[dns_server.address], dns_timeout_seconds=2.0)


async def test_business_lead(full: Enricher) -> None:
    result = await full.enrich(email_domain="acme-corp.com", ip="81.2.69.142")
    assert result == EnrichmentResult(
        email_kind="business",
        company_domain="acme-corp.com",
        company_name_guess="Acme Corp",
        mx="valid",
        geo=LONDON,
        steps=(
            EnrichmentStep("geoip", "ok", "country GB"),
            EnrichmentStep("email_domain", "ok", "business domain"),
            EnrichmentStep("company", "ok", "name guessed from domain"),
            EnrichmentStep("mx", "ok", "MX record found"),
        ),
    )


async def test_as_json(full: Enricher) -> None:
    result = await full.enrich(email_domain="acme-corp.com", ip="81.2.69.142")
    expected = {
        "email_kind": "business",
        "company_domain": "acme-corp.com",
        "company_name_guess": "Acme Corp",
        "mx": "valid",
        "geo": {
            "country_code": "GB",
            "country_name": "United Kingdom",
            "region_code": "ENG",
            "region_name": "England",
            "city": "London",
            "time_zone": "Europe/London",
            "latitude": 51.5142,
            "longitude": -0.0931,
            "in_eu": False,
        },
        "steps": [
            {"name": "geoip", "status": "ok", "detail": "country GB"},
            {"name": "email_domain", "status": "ok", "detail": "business domain"},
            {"name": "company", "status": "ok", "detail": "name guessed from domain"},
            {"name": "mx", "status": "ok", "detail": "MX record found"},
        ],
    }
    assert result.as_json() == expected
    assert json.loads(json.dumps(result.as_json())) == expected


async def test_as_json_without_geo(enricher_factory: Callable[..., Enricher]) -> None:
    result = await enricher_factory().enrich(email_domain="gmail.com", ip=None)
    data = result.as_json()
    assert data["geo"] is None
    assert json.loads(json.dumps(data)) == data


async def test_domain_is_normalised(mx_enricher: Enricher) -> None:
    result = await mx_enricher.enrich(email_domain="Mail.ACME-Corp.com.", ip=None)
    assert (result.email_kind, result.company_domain, result.company_name_guess) == (
        "business",
        "mail.acme-corp.com",
        "Acme Corp",
    )


async def test_free_mail(full: Enricher) -> None:
    result = await full.enrich(email_domain="gmail.com", ip="216.160.83.56")
    assert result.email_kind == "free"
    assert (result.company_domain, result.company_name_guess, result.mx) == (None, None, "valid")
    assert result.geo is not None
    assert (result.geo.country_code, result.geo.region_code, result.geo.in_eu) == ("US", "WA", False)
    assert result.steps == (
        EnrichmentStep("geoip", "ok", "country US"),
        EnrichmentStep("email_domain", "ok", "free-mail domain"),
        EnrichmentStep("company", "skipped", "free-mail domain"),
        EnrichmentStep("mx", "ok", "MX record found"),
    )


async def test_disposable(full: Enricher) -> None:
    result = await full.enrich(email_domain="mailinator.com", ip="89.160.20.112")
    assert (result.email_kind, result.company_domain, result.company_name_guess, result.mx) == (
        "disposable",
        None,
        None,
        "valid",
    )
    assert result.geo is not None and result.geo.in_eu is True
    assert result.steps[1:3] == (
        EnrichmentStep("email_domain", "ok", "disposable domain"),
        EnrichmentStep("company", "skipped", "disposable domain"),
    )


@pytest.mark.parametrize(
    ("domain", "mx", "step"),
    [
        ("nxdomain.example", "invalid", EnrichmentStep("mx", "ok", "domain does not exist")),
        ("bare.example", "invalid", EnrichmentStep("mx", "ok", "no MX or address records")),
        ("nullmx.example", "invalid", EnrichmentStep("mx", "ok", "null MX: domain accepts no mail")),
        ("a-only.example", "valid", EnrichmentStep("mx", "ok", "no MX, address record found")),
        ("servfail.example", "unknown", EnrichmentStep("mx", "failed", "no DNS server answered")),
    ],
)
async def test_mx_verdicts(mx_enricher: Enricher, domain: str, mx: str, step: EnrichmentStep) -> None:
    result = await mx_enricher.enrich(email_domain=domain, ip=None)
    assert (result.mx, result.steps[3]) == (mx, step)


async def test_silent_dns_stays_within_budget(
    enricher_factory: Callable[..., Enricher], city_db: Path, dns_server: DnsServer
) -> None:
    enricher = enricher_factory(
        geoip_city_db=city_db, mx_check=True, dns_nameservers=[dns_server.address], dns_timeout_seconds=0.3
    )
    started = time.monotonic()
    result = await enricher.enrich(email_domain="silent.example", ip="81.2.69.142")
    assert time.monotonic() - started < 1.0
    assert (result.mx, result.geo) == ("unknown", LONDON)
    assert result.steps[3] == EnrichmentStep("mx", "failed", "DNS timeout")


async def test_closed_dns_port_is_unknown(enricher_factory: Callable[..., Enricher]) -> None:
    enricher = enricher_factory(
        mx_check=True, dns_nameservers=[f"127.0.0.1:{closed_udp_port()}"], dns_timeout_seconds=0.3
    )
    result = await enricher.enrich(email_domain="acme-corp.com", ip=None)
    assert (result.mx, result.steps[3]) == ("unknown", EnrichmentStep("mx", "failed", "DNS timeout"))
    assert result.company_name_guess == "Acme Corp"


async def test_mx_disabled_makes_no_query(
    enricher_factory: Callable[..., Enricher], dns_server: DnsServer
) -> None:
    enricher = enricher_factory(mx_check=False, dns_nameservers=[dns_server.address])
    result = await enricher.enrich(email_domain="acme-corp.com", ip=None)
    assert (result.mx, result.steps[3]) == ("skipped", MX_OFF)
    assert dns_server.queries == []


async def test_bad_nameserver_setting(enricher_factory: Callable[..., Enricher]) -> None:
    enricher = enricher_factory(mx_check=True, dns_nameservers=["dns.example.com"])
    result = await enricher.enrich(email_domain="acme-corp.com", ip=None)
    assert (result.mx, result.steps[3]) == (
        "unknown",
        EnrichmentStep("mx", "failed", "invalid DNS_NAMESERVERS setting"),
    )


async def test_settings_from_environment(
    monkeypatch: pytest.MonkeyPatch, city_db: Path, dns_server: DnsServer
) -> None:
    monkeypatch.setenv("GEOIP_CITY_DB", str(city_db))
    monkeypatch.setenv("MX_CHECK", "true")
    monkeypatch.setenv("DNS_NAMESERVERS", f"127.0.0.1:{closed_udp_port()}, {dns_server.address}")
    monkeypatch.setenv("DNS_TIMEOUT_SECONDS", "2")
    enricher = Enricher(Settings())
    try:
        result = await enricher.enrich(email_domain="acme-corp.com", ip="81.2.69.142")
    finally:
        enricher.close()
    assert (result.mx, result.geo) == ("valid", LONDON)


@pytest.mark.parametrize("domain", ["", "   ", "localhost", "john.doe@acme-corp.com", "acme..com", "1.2.3.4"])
async def test_invalid_domain(mx_enricher: Enricher, dns_server: DnsServer, domain: str) -> None:
    result = await mx_enricher.enrich(email_domain=domain, ip=None)
    assert result == EnrichmentResult(
        email_kind="disposable",
        company_domain=None,
        company_name_guess=None,
        mx="invalid",
        geo=None,
        steps=(
            GEO_OFF,
            EnrichmentStep("email_domain", "failed", "invalid domain"),
            EnrichmentStep("company", "skipped", "invalid domain"),
            EnrichmentStep("mx", "skipped", "invalid domain"),
        ),
    )
    assert dns_server.queries == []


async def test_invalid_domain_with_mx_disabled(enricher_factory: Callable[..., Enricher]) -> None:
    result = await enricher_factory().enrich(email_domain="", ip="")
    assert (result.email_kind, result.mx) == ("disposable", "skipped")
    assert result.steps == (
        GEO_OFF,
        EnrichmentStep("email_domain", "failed", "invalid domain"),
        EnrichmentStep("company", "skipped", "invalid domain"),
        MX_OFF,
    )


@pytest.mark.parametrize(
    ("ip", "step"),
    [
        (None, EnrichmentStep("geoip", "skipped", "no IP address")),
        ("192.168.1.1", EnrichmentStep("geoip", "skipped", "private or reserved address")),
        ("::1", EnrichmentStep("geoip", "skipped", "private or reserved address")),
        ("8.8.8.8", EnrichmentStep("geoip", "skipped", "not in database")),
        ("not an ip", EnrichmentStep("geoip", "failed", "invalid IP address")),
        ("81.2.69.142, 10.0.0.1", EnrichmentStep("geoip", "failed", "invalid IP address")),
    ],
)
async def test_geo_steps(
    enricher_factory: Callable[..., Enricher], city_db: Path, ip: str | None, step: EnrichmentStep
) -> None:
    result = await enricher_factory(geoip_city_db=city_db).enrich(email_domain="acme-corp.com", ip=ip)
    assert (result.geo, result.steps[0]) == (None, step)


async def test_missing_geoip_file_is_skipped(
    enricher_factory: Callable[..., Enricher], tmp_path: Path
) -> None:
    enricher = enricher_factory(geoip_city_db=tmp_path / "GeoLite2-City.mmdb")
    result = await enricher.enrich(email_domain="acme-corp.com", ip="81.2.69.142")
    assert (result.geo, result.steps[0]) == (
        None,
        EnrichmentStep("geoip", "skipped", "GeoIP database file not found"),
    )


async def test_corrupt_geoip_file_is_failed(
    enricher_factory: Callable[..., Enricher], tmp_path: Path
) -> None:
    path = tmp_path / "GeoLite2-City.mmdb"
    path.write_bytes(b"\x00" * 2048)
    result = await enricher_factory(geoip_city_db=path).enrich(email_domain="acme-corp.com", ip="81.2.69.142")
    assert (result.geo, result.steps[0]) == (
        None,
        EnrichmentStep("geoip", "failed", "GeoIP database unreadable"),
    )


async def test_geoip_off(enricher_factory: Callable[..., Enricher]) -> None:
    result = await enricher_factory().enrich(email_domain="acme-corp.com", ip="81.2.69.142")
    assert (result.geo, result.steps[0]) == (None, GEO_OFF)


async def test_after_close(enricher_factory: Callable[..., Enricher], city_db: Path) -> None:
    enricher = enricher_factory(geoip_city_db=city_db)
    enricher.close()
    enricher.close()
    result = await enricher.enrich(email_domain="acme-corp.com", ip="81.2.69.142")
    assert result.steps[0] == EnrichmentStep("geoip", "skipped", "GeoIP reader closed")


async def test_no_guess_for_bare_suffix(enricher_factory: Callable[..., Enricher]) -> None:
    result = await enricher_factory().enrich(email_domain="co.uk", ip=None)
    assert (result.email_kind, result.company_domain, result.company_name_guess) == (
        "business",
        "co.uk",
        None,
    )
    assert result.steps[2] == EnrichmentStep("company", "skipped", "no organisation label in domain")


async def test_step_lookup(enricher_factory: Callable[..., Enricher]) -> None:
    result = await enricher_factory().enrich(email_domain="acme-corp.com", ip=None)
    assert result.step("mx") == MX_OFF
    assert result.step("social") is None


# --- a part that breaks unexpectedly is recorded, never raised --------------------------------------


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("leaked 81.2.69.142 john.doe@acme-corp.com")


async def _boom_async(*args: Any, **kwargs: Any) -> Any:
    _boom()


@pytest.mark.parametrize(
    ("target", "index", "changes"),
    [
        ("leadflow.enrichment.geoip.GeoIPReader.lookup", 0, {"geo": None}),
        (
            "leadflow.enrichment.service.classify_domain",
            1,
            {"email_kind": "disposable", "company_domain": None},
        ),
        ("leadflow.enrichment.service.guess_company_name", 2, {"company_name_guess": None}),
    ],
)
async def test_internal_errors_are_steps(
    monkeypatch: pytest.MonkeyPatch,
    enricher_factory: Callable[..., Enricher],
    city_db: Path,
    target: str,
    index: int,
    changes: dict[str, Any],
) -> None:
    enricher = enricher_factory(geoip_city_db=city_db)
    monkeypatch.setattr(target, _boom)
    result = await enricher.enrich(email_domain="acme-corp.com", ip="81.2.69.142")
    assert result.steps[index] == EnrichmentStep(
        result.steps[index].name, "failed", "internal error RuntimeError"
    )
    for key, value in changes.items():
        assert getattr(result, key) == value


async def test_internal_error_in_mx(
    monkeypatch: pytest.MonkeyPatch, enricher_factory: Callable[..., Enricher], dns_server: DnsServer
) -> None:
    enricher = enricher_factory(mx_check=True, dns_nameservers=[dns_server.address])
    monkeypatch.setattr("leadflow.enrichment.dns.MxChecker.check", _boom_async)
    result = await enricher.enrich(email_domain="acme-corp.com", ip=None)
    assert (result.mx, result.steps[3]) == (
        "unknown",
        EnrichmentStep("mx", "failed", "internal error RuntimeError"),
    )


# --- no personal data in step details ---------------------------------------------------------------

PRIVACY_CASES = [
    ("acme-corp.com", "81.2.69.142"),
    ("gmail.com", "216.160.83.56"),
    ("mailinator.com", "2a02:d180::1"),
    ("nxdomain.example", "8.8.8.8"),
    ("silent.example", "192.168.1.1"),
    ("john.doe@acme-corp.com", "81.2.69.142; DROP TABLE leads"),
    ("jane.roe@gmail.com", "fe80::1%eth0"),
    ("mail.acme-corp.com", "::ffff:81.2.69.142"),
]


@pytest.mark.parametrize(("domain", "ip"), PRIVACY_CASES)
async def test_details_hold_no_personal_data(
    enricher_factory: Callable[..., Enricher],
    city_db: Path,
    dns_server: DnsServer,
    domain: str,
    ip: str,
) -> None:
    enricher = enricher_factory(
        geoip_city_db=city_db, mx_check=True, dns_nameservers=[dns_server.address], dns_timeout_seconds=0.3
    )
    result = await enricher.enrich(email_domain=domain, ip=ip)
    local_part, _, bare_domain = domain.rpartition("@")
    forbidden = {ip, ip.split("%")[0].removeprefix("::ffff:"), bare_domain}
    if local_part:
        forbidden |= {local_part, domain}
    for step in result.steps:
        for value in forbidden:
            assert value.lower() not in step.detail.lower(), (step, value)
    stored = json.dumps([s.detail for s in result.steps])
    assert "@" not in stored


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(domain=st.text(max_size=300), ip=st.one_of(st.none(), st.text(max_size=60)))
def test_never_raises(city_db: Path, domain: str, ip: str | None) -> None:
    enricher = Enricher(make_settings(geoip_city_db=city_db))
    try:
        result = asyncio.run(enricher.enrich(email_domain=domain, ip=ip))
    finally:
        enricher.close()
    assert result.email_kind in {"business", "free", "disposable"}
    assert result.mx == "skipped"
    assert [s.name for s in result.steps] == ["geoip", "email_domain", "company", "mx"]
    assert all(s.status in {"ok", "skipped", "failed"} for s in result.steps)
    json.dumps(result.as_json())
    # details come from a fixed vocabulary: nothing from the input can reach them
    assert all(s.detail in KNOWN_DETAILS or COUNTRY_DETAIL.fullmatch(s.detail) for s in result.steps), (
        result.steps
    )


KNOWN_DETAILS = {
    "GeoIP database not configured",
    "GeoIP database file not found",
    "GeoIP database unreadable",
    "GeoIP database is not a City database",
    "GeoIP reader closed",
    "GeoIP database lookup error",
    "no IP address",
    "invalid IP address",
    "private or reserved address",
    "not in database",
    "no country in record",
    "invalid domain",
    "business domain",
    "free-mail domain",
    "disposable domain",
    "name guessed from domain",
    "no organisation label in domain",
    "MX check disabled",
}
COUNTRY_DETAIL = re.compile(r"country [A-Z]{2}")


def test_geoinfo_is_reexported() -> None:
    assert service.GeoInfo is GeoInfo
