"""GeoIP look-ups against MaxMind's official test databases (enrichment/geoip.py)."""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadflow.enrichment.geoip import GeoInfo, GeoIPReader, GeoLookup, is_public, parse_ip

LONDON = GeoInfo(
    country_code="GB",
    country_name="United Kingdom",
    region_code="ENG",
    region_name="England",
    city="London",
    time_zone="Europe/London",
    latitude=51.5142,
    longitude=-0.0931,
    in_eu=False,
)


@pytest.fixture
def reader(city_db: Path) -> Iterator[GeoIPReader]:
    geo = GeoIPReader(city_db)
    yield geo
    geo.close()


@pytest.fixture
def reader2(geoip2_city_db: Path) -> Iterator[GeoIPReader]:
    geo = GeoIPReader(geoip2_city_db)
    yield geo
    geo.close()


def test_london(reader: GeoIPReader) -> None:
    assert reader.available
    assert reader.lookup("81.2.69.142") == GeoLookup("ok", "country GB", LONDON)


def test_region_is_the_largest_subdivision(reader: GeoIPReader) -> None:
    # 2.125.160.216/29 is England > West Berkshire: the region is England, the level rules work with.
    assert reader.lookup("2.125.160.220") == GeoLookup(
        "ok",
        "country GB",
        GeoInfo("GB", "United Kingdom", "ENG", "England", "Boxford", "Europe/London", 51.75, -1.25, False),
    )


def test_united_states(reader: GeoIPReader) -> None:
    assert reader.lookup("216.160.83.56") == GeoLookup(
        "ok",
        "country US",
        GeoInfo(
            "US",
            "United States",
            "WA",
            "Washington",
            "Milton",
            "America/Los_Angeles",
            47.2513,
            -122.3149,
            False,
        ),
    )


def test_eu_member(reader: GeoIPReader) -> None:
    assert reader.lookup("89.160.20.112") == GeoLookup(
        "ok",
        "country SE",
        GeoInfo(
            "SE",
            "Sweden",
            "E",
            "Östergötland County",
            "Linköping",
            "Europe/Stockholm",
            58.4167,
            15.6167,
            True,
        ),
    )


def test_ipv6_without_subdivision(reader: GeoIPReader) -> None:
    assert reader.lookup("2001:218::") == GeoLookup(
        "ok", "country JP", GeoInfo("JP", "Japan", None, None, None, "Asia/Tokyo", 35.68536, 139.75309, False)
    )


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("2a02:d180::1", GeoInfo("DE", "Germany", None, None, None, "Europe/Berlin", 51.5, 10.5, True)),
        ("2a02:cfc0::1", GeoInfo("FR", "France", None, None, None, "Europe/Paris", 46.0, 2.0, True)),
    ],
)
def test_geoip2_city_eu_ipv6(reader2: GeoIPReader, ip: str, expected: GeoInfo) -> None:
    assert reader2.lookup(ip) == GeoLookup("ok", f"country {expected.country_code}", expected)


@pytest.mark.parametrize("ip", ["::ffff:81.2.69.142", " 81.2.69.142 ", "81.2.69.142\n"])
def test_mapped_and_padded_addresses(reader: GeoIPReader, ip: str) -> None:
    assert reader.lookup(ip) == GeoLookup("ok", "country GB", LONDON)


def test_not_in_database(reader: GeoIPReader) -> None:
    assert reader.lookup("8.8.8.8") == GeoLookup("skipped", "not in database")
    assert reader.lookup("2606:4700::1111") == GeoLookup("skipped", "not in database")


PRIVATE_OR_RESERVED = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "127.0.0.1",
    "169.254.10.1",
    "224.0.0.1",
    "239.255.255.250",
    "0.0.0.0",
    "240.0.0.1",
    "255.255.255.255",
    "100.64.0.1",
    "192.0.2.1",
    "198.51.100.7",
    "::1",
    "::",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
]


@pytest.mark.parametrize("ip", PRIVATE_OR_RESERVED)
def test_private_and_reserved_are_skipped(reader: GeoIPReader, ip: str) -> None:
    assert reader.lookup(ip) == GeoLookup("skipped", "private or reserved address")


@pytest.mark.parametrize(
    "ip",
    [
        "not-an-ip",
        "999.1.1.1",
        "81.2.69",
        "1.2.3.4.5",
        "01.2.3.4",
        "81.2.69.142; DROP TABLE leads",
        "81.2.69.142:443",
        "[2001:218::]",
        "\x00",
        "2001:218::g",
        "x" * 10_000,
    ],
)
def test_garbage_is_failed(reader: GeoIPReader, ip: str) -> None:
    assert reader.lookup(ip) == GeoLookup("failed", "invalid IP address")


@pytest.mark.parametrize("ip", [None, "", "   "])
def test_no_ip_is_skipped(reader: GeoIPReader, ip: str | None) -> None:
    assert reader.lookup(ip) == GeoLookup("skipped", "no IP address")


def test_non_string_ip_is_failed(reader: GeoIPReader) -> None:
    # bytes of length 4 would be a valid IPv4 address for ipaddress: never accept them
    assert reader.lookup(b"\x51\x02\x45\x8e") == GeoLookup("failed", "invalid IP address")  # type: ignore[arg-type]


def test_not_configured() -> None:
    reader = GeoIPReader(None)
    assert not reader.available
    assert reader.lookup("81.2.69.142") == GeoLookup("skipped", "GeoIP database not configured")


def test_missing_file(tmp_path: Path) -> None:
    reader = GeoIPReader(tmp_path / "GeoLite2-City.mmdb")
    assert not reader.available
    assert reader.lookup("81.2.69.142") == GeoLookup("skipped", "GeoIP database file not found")


def test_garbage_file_is_failed(tmp_path: Path) -> None:
    path = tmp_path / "GeoLite2-City.mmdb"
    path.write_bytes(b"this is not a MaxMind database" * 100)
    reader = GeoIPReader(path)
    assert not reader.available
    assert reader.lookup("81.2.69.142") == GeoLookup("failed", "GeoIP database unreadable")


def test_empty_file_is_failed(tmp_path: Path) -> None:
    path = tmp_path / "GeoLite2-City.mmdb"
    path.write_bytes(b"")
    assert GeoIPReader(path).lookup("81.2.69.142") == GeoLookup("failed", "GeoIP database unreadable")


def test_directory_is_failed(tmp_path: Path) -> None:
    assert GeoIPReader(tmp_path).lookup("81.2.69.142") == GeoLookup("failed", "GeoIP database unreadable")


def test_asn_database_is_not_a_city_database(geoip_dir: Path) -> None:
    reader = GeoIPReader(geoip_dir / "GeoLite2-ASN-Test.mmdb")
    assert not reader.available
    assert reader.lookup("81.2.69.142") == GeoLookup("failed", "GeoIP database is not a City database")


def test_corrupt_search_tree_is_failed(city_db: Path, tmp_path: Path) -> None:
    """Metadata intact (the file opens) but the search tree is garbage: the look-up fails, no raise."""
    path = tmp_path / "corrupt.mmdb"
    shutil.copy(city_db, path)
    opened = GeoIPReader(path)
    assert opened.available
    opened.close()
    data = bytearray(path.read_bytes())
    data[:4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    reader = GeoIPReader(path)
    assert reader.available
    assert reader.lookup("81.2.69.142") == GeoLookup("failed", "GeoIP database lookup error")
    reader.close()


def test_closed_reader_skips(city_db: Path) -> None:
    reader = GeoIPReader(city_db)
    reader.close()
    reader.close()  # idempotent
    assert not reader.available
    assert reader.lookup("81.2.69.142") == GeoLookup("skipped", "GeoIP reader closed")


def test_database_replaced_on_disk_while_open(city_db: Path, tmp_path: Path) -> None:
    """geoipupdate renames a new file over the old one: the open reader keeps answering."""
    path = tmp_path / "city.mmdb"
    shutil.copy(city_db, path)
    reader = GeoIPReader(path)
    path.unlink()
    assert reader.lookup("81.2.69.142") == GeoLookup("ok", "country GB", LONDON)
    reader.close()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("81.2.69.142", "81.2.69.142"),
        ("::ffff:81.2.69.142", "81.2.69.142"),
        ("fe80::1%eth0", "fe80::1"),
        ("2001:218::", "2001:218::"),
        ("nope", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_ip(raw: str | None, expected: str | None) -> None:
    parsed = parse_ip(raw)
    assert (None if parsed is None else str(parsed)) == expected


@pytest.mark.parametrize("ip", PRIVATE_OR_RESERVED)
def test_is_public_false(ip: str) -> None:
    addr = parse_ip(ip)
    assert addr is not None
    assert not is_public(addr)


@pytest.mark.parametrize("ip", ["81.2.69.142", "8.8.8.8", "2001:218::", "2a02:d180::1"])
def test_is_public_true(ip: str) -> None:
    assert is_public(ipaddress.ip_address(ip))
