"""Fixtures for enrichment tests: MaxMind's test databases from shared/ and a local DNS server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.enrichment.dns_server import NXDOMAIN, SERVFAIL, SILENT, DnsServer, Zone, start_dns_server

ZONES: Zone = {
    "acme-corp.com": {"MX": ["10 mx1.acme-corp.com.", "20 mx2.acme-corp.com."]},
    "gmail.com": {"MX": ["5 gmail-smtp-in.l.google.com."]},
    "mailinator.com": {"MX": ["10 mail.mailinator.com."]},
    "nxdomain.example": NXDOMAIN,
    "silent.example": SILENT,
    "servfail.example": SERVFAIL,
    "a-only.example": {"A": ["192.0.2.10"]},
    "aaaa-only.example": {"AAAA": ["2001:db8::10"]},
    "bare.example": {},
    "nullmx.example": {"MX": ["0 ."]},
    "a-silent.example": {"A": SILENT, "AAAA": SILENT},
    "a-servfail.example": {"A": SERVFAIL},
}


@pytest.fixture
def geoip_dir(shared: Path) -> Path:
    path = shared / "data" / "geoip"
    if not (path / "GeoLite2-City-Test.mmdb").is_file():
        pytest.skip(f"MaxMind test databases not found in {path}")
    return path


@pytest.fixture
def city_db(geoip_dir: Path) -> Path:
    return geoip_dir / "GeoLite2-City-Test.mmdb"


@pytest.fixture
def geoip2_city_db(geoip_dir: Path) -> Path:
    return geoip_dir / "GeoIP2-City-Test.mmdb"


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    server = await start_dns_server(ZONES)
    try:
        yield server
    finally:
        assert server.transport is not None
        server.transport.close()
