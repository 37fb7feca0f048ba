"""IP geolocation from a MaxMind City database (GeoLite2-City / GeoIP2-City ``.mmdb``).

The database is opened once with ``MODE_AUTO``: libmaxminddb's C extension over a memory map when the
wheel has it (about 30 µs a look-up, measured; the pure-Python ``MODE_MEMORY`` reader takes about
250 µs), so a look-up is cheap enough to run inline on the event loop, where a thread hand-off would
cost more than the look-up itself. Every outcome is a value, never an exception; details never contain
the address looked up.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import geoip2.database
import geoip2.errors
import geoip2.models
import maxminddb
import structlog

log = structlog.get_logger("leadflow.enrichment")

StepStatus = Literal["ok", "skipped", "failed"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NOT_CONFIGURED = "GeoIP database not configured"
FILE_NOT_FOUND = "GeoIP database file not found"
UNREADABLE = "GeoIP database unreadable"
NOT_CITY = "GeoIP database is not a City database"
CLOSED = "GeoIP reader closed"
NO_IP = "no IP address"
INVALID_IP = "invalid IP address"
PRIVATE = "private or reserved address"
NOT_FOUND = "not in database"
LOOKUP_ERROR = "GeoIP database lookup error"


@dataclass(frozen=True, slots=True)
class GeoInfo:
    country_code: str | None  # ISO 3166-1 alpha-2, e.g. "US"
    country_name: str | None
    region_code: str | None  # ISO 3166-2 subdivision code without country, e.g. "CA" for California
    region_name: str | None
    city: str | None
    time_zone: str | None
    latitude: float | None
    longitude: float | None
    in_eu: bool  # MaxMind's is_in_european_union

    @classmethod
    def from_city(cls, response: geoip2.models.City) -> GeoInfo:
        # The first subdivision is the largest (a US state, England within the UK): the level that
        # routing and privacy rules work with.
        region = response.subdivisions[0] if response.subdivisions else None
        return cls(
            country_code=response.country.iso_code or None,
            country_name=response.country.name or None,
            region_code=(region.iso_code or None) if region is not None else None,
            region_name=(region.name or None) if region is not None else None,
            city=response.city.name or None,
            time_zone=response.location.time_zone or None,
            latitude=response.location.latitude,
            longitude=response.location.longitude,
            in_eu=bool(response.country.is_in_european_union),
        )


@dataclass(frozen=True, slots=True)
class GeoLookup:
    status: StepStatus
    detail: str
    geo: GeoInfo | None = None


def parse_ip(value: str | None) -> IPAddress | None:
    """The address, with IPv4-mapped IPv6 (``::ffff:a.b.c.d``) unwrapped and any zone id dropped."""
    if not isinstance(value, str):
        return None
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr.scope_id is not None:
            return ipaddress.IPv6Address(addr.packed)
    return addr


def is_public(addr: IPAddress) -> bool:
    """False for private, loopback, link-local, reserved, multicast, unspecified and other non-global ranges."""
    return not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_reserved
        or addr.is_multicast
        or addr.is_unspecified
        or not addr.is_global
    )


class GeoIPReader:
    """A City database opened once; ``lookup`` never raises."""

    def __init__(self, path: Path | None) -> None:
        self._reader: geoip2.database.Reader | None = None
        self._unavailable: GeoLookup | None = None
        if path is None:
            self._unavailable = GeoLookup("skipped", NOT_CONFIGURED)
            return
        try:
            missing = not path.exists()
        except OSError:  # e.g. a directory we may not search: the open below reports it
            missing = False
        if missing:
            log.warning("geoip_database_missing", path=str(path))
            self._unavailable = GeoLookup("skipped", FILE_NOT_FOUND)
            return
        try:
            reader = geoip2.database.Reader(str(path), mode=maxminddb.MODE_AUTO)
            database_type = str(reader.metadata().database_type)
        except Exception as exc:  # InvalidDatabaseError, OSError...: a bad file never stops the worker
            log.warning("geoip_database_unreadable", path=str(path), error=type(exc).__name__)
            self._unavailable = GeoLookup("failed", UNREADABLE)
            return
        if "City" not in database_type:
            reader.close()
            log.warning("geoip_database_not_city", path=str(path), database_type=database_type)
            self._unavailable = GeoLookup("failed", NOT_CITY)
            return
        self._reader = reader

    @property
    def available(self) -> bool:
        return self._reader is not None

    def lookup(self, ip: str | None) -> GeoLookup:
        if self._unavailable is not None:
            return self._unavailable
        reader = self._reader
        if reader is None:
            return GeoLookup("skipped", CLOSED)
        if ip is None or (isinstance(ip, str) and not ip.strip()):
            return GeoLookup("skipped", NO_IP)
        addr = parse_ip(ip)
        if addr is None:
            return GeoLookup("failed", INVALID_IP)
        if not is_public(addr):
            return GeoLookup("skipped", PRIVATE)
        try:
            response = reader.city(addr)
        except geoip2.errors.AddressNotFoundError:
            return GeoLookup("skipped", NOT_FOUND)
        except Exception as exc:  # a corrupt file shows itself here: record it, never raise
            log.warning("geoip_lookup_failed", error=type(exc).__name__)
            return GeoLookup("failed", LOOKUP_ERROR)
        geo = GeoInfo.from_city(response)
        detail = f"country {geo.country_code}" if geo.country_code else "no country in record"
        return GeoLookup("ok", detail, geo)

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
