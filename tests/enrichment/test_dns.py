"""MX checks against a real DNS server on 127.0.0.1 (enrichment/dns.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import dns.exception
import dns.rdatatype
import dns.resolver
import pytest

from leadflow.enrichment.dns import MxChecker, MxOutcome, build_resolver, parse_nameserver
from tests.enrichment.dns_server import DnsServer, closed_udp_port

VALID_MX = MxOutcome("valid", "ok", "MX record found")
VALID_ADDRESS = MxOutcome("valid", "ok", "no MX, address record found")
NXDOMAIN = MxOutcome("invalid", "ok", "domain does not exist")
NULL_MX = MxOutcome("invalid", "ok", "null MX: domain accepts no mail")
NO_RECORDS = MxOutcome("invalid", "ok", "no MX or address records")
TIMEOUT = MxOutcome("unknown", "failed", "DNS timeout")
NO_SERVER = MxOutcome("unknown", "failed", "no DNS server answered")


@pytest.mark.parametrize(
    ("domain", "expected", "queries"),
    [
        ("acme-corp.com", VALID_MX, ["MX"]),
        ("nxdomain.example", NXDOMAIN, ["MX"]),
        ("nullmx.example", NULL_MX, ["MX"]),
        ("a-only.example", VALID_ADDRESS, ["MX", "A", "AAAA"]),
        ("aaaa-only.example", VALID_ADDRESS, ["MX", "A", "AAAA"]),
        ("bare.example", NO_RECORDS, ["MX", "A", "AAAA"]),
        ("servfail.example", NO_SERVER, ["MX"]),
        ("a-servfail.example", NO_SERVER, ["MX", "A", "AAAA"]),
        ("refused.example", NO_SERVER, ["MX"]),
    ],
)
async def test_answers(dns_server: DnsServer, domain: str, expected: MxOutcome, queries: list[str]) -> None:
    checker = MxChecker(nameservers=[dns_server.address], timeout=2.0)
    assert await checker.check(domain) == expected
    assert sorted(dns_server.queries) == sorted((domain, q) for q in queries)


async def test_silent_server_times_out_quickly(dns_server: DnsServer) -> None:
    checker = MxChecker(nameservers=[dns_server.address], timeout=0.3)
    started = time.monotonic()
    assert await checker.check("silent.example") == TIMEOUT
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.0
    assert dns_server.queries[0] == ("silent.example", "MX")


async def test_silent_address_fallback_times_out_within_one_budget(dns_server: DnsServer) -> None:
    """The MX answer takes part of the budget; the A/AAAA fallback only gets what is left."""
    checker = MxChecker(nameservers=[dns_server.address], timeout=0.4)
    started = time.monotonic()
    assert await checker.check("a-silent.example") == TIMEOUT
    assert time.monotonic() - started < 1.0


async def test_closed_port_is_unknown() -> None:
    checker = MxChecker(nameservers=[f"127.0.0.1:{closed_udp_port()}"], timeout=0.3)
    started = time.monotonic()
    outcome = await checker.check("acme-corp.com")
    assert outcome == TIMEOUT
    assert time.monotonic() - started < 1.0


async def test_second_server_answers_when_the_first_is_dead(dns_server: DnsServer) -> None:
    checker = MxChecker(nameservers=[f"127.0.0.1:{closed_udp_port()}", dns_server.address], timeout=2.0)
    assert await checker.check("acme-corp.com") == VALID_MX


async def test_answers_are_cached(dns_server: DnsServer) -> None:
    checker = MxChecker(nameservers=[dns_server.address], timeout=2.0)
    assert await checker.check("acme-corp.com") == VALID_MX
    assert await checker.check("acme-corp.com") == VALID_MX
    assert dns_server.queries == [("acme-corp.com", "MX")]


async def test_concurrent_checks(dns_server: DnsServer) -> None:
    checker = MxChecker(nameservers=[dns_server.address], timeout=2.0)
    results = await asyncio.gather(
        checker.check("acme-corp.com"), checker.check("nxdomain.example"), checker.check("bare.example")
    )
    assert list(results) == [VALID_MX, NXDOMAIN, NO_RECORDS]


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address", "port"),
    [
        ("127.0.0.1", "127.0.0.1", 53),
        ("127.0.0.1:5353", "127.0.0.1", 5353),
        (" 10.0.0.2:53 ", "10.0.0.2", 53),
        ("::1", "::1", 53),
        ("[::1]:5353", "::1", 5353),
        ("[2001:db8::53]", "2001:db8::53", 53),
    ],
)
def test_parse_nameserver(text: str, address: str, port: int) -> None:
    server = parse_nameserver(text)
    assert (server.address, server.port) == (address, port)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "localhost",
        "dns.example:53",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:x",
        "[::1",
        "[::1]5353",
        "1.2.3",
    ],
)
def test_parse_nameserver_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_nameserver(text)


async def test_bad_nameserver_setting_is_unknown() -> None:
    checker = MxChecker(nameservers=["127.0.0.1", "not-an-address"], timeout=1.0)
    assert await checker.check("acme-corp.com") == MxOutcome(
        "unknown", "failed", "invalid DNS_NAMESERVERS setting"
    )


def test_system_resolver_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\noptions timeout:9\n")
    resolver = build_resolver([], 0.7, str(conf))
    assert [str(ns) for ns in resolver.nameservers] == ["127.0.0.53"]
    assert (resolver.timeout, resolver.lifetime) == (0.35, 0.7)


def test_explicit_servers_ignore_system_configuration(tmp_path: Path) -> None:
    resolver = build_resolver(["127.0.0.1:5353"], 1.5, str(tmp_path / "missing"))
    assert [(ns.address, ns.port) for ns in resolver.nameservers] == [("127.0.0.1", 5353)]  # type: ignore[union-attr]
    assert (resolver.timeout, resolver.lifetime) == (0.75, 1.5)


def test_attempt_timeout_shares_the_budget_between_servers() -> None:
    resolver = build_resolver(["127.0.0.1", "127.0.0.2", "127.0.0.3"], 1.5)
    assert (resolver.timeout, resolver.lifetime) == (0.5, 1.5)


async def test_missing_system_configuration_is_unknown(tmp_path: Path) -> None:
    checker = MxChecker(nameservers=[], timeout=1.0, resolv_conf=str(tmp_path / "resolv.conf"))
    assert await checker.check("acme-corp.com") == MxOutcome(
        "unknown", "failed", "no DNS resolver configuration"
    )


# --- defensive branches (a resolver that misbehaves) ----------------------------------------------


class FakeResolver:
    def __init__(self, **by_type: Any) -> None:
        self.by_type = by_type

    async def resolve(self, name: Any, rdtype: Any, **kwargs: Any) -> Any:
        result = self.by_type[dns.rdatatype.to_text(rdtype)]
        if isinstance(result, BaseException) or (
            isinstance(result, type) and issubclass(result, BaseException)
        ):
            raise result  # an instance, or a class Python instantiates
        if result == "hang":
            await asyncio.sleep(3600)
        return result


def checker_with(resolver: FakeResolver, timeout: float = 1.0) -> MxChecker:
    checker = MxChecker(nameservers=["127.0.0.1"], timeout=timeout)
    checker._resolver = resolver  # type: ignore[assignment]
    return checker


async def test_unexpected_error_is_unknown() -> None:
    checker = checker_with(FakeResolver(MX=RuntimeError("boom 81.2.69.142")))
    assert await checker.check("acme-corp.com") == MxOutcome("unknown", "failed", "DNS error RuntimeError")


async def test_other_dns_error_is_unknown() -> None:
    checker = checker_with(FakeResolver(MX=dns.resolver.YXDOMAIN))
    assert await checker.check("acme-corp.com") == MxOutcome("unknown", "failed", "DNS error YXDOMAIN")


async def test_unexpected_error_in_fallback_is_unknown() -> None:
    checker = checker_with(
        FakeResolver(MX=dns.resolver.NoAnswer, A=OSError("net down"), AAAA=dns.resolver.NoAnswer)
    )
    assert await checker.check("acme-corp.com") == MxOutcome("unknown", "failed", "DNS error OSError")


async def test_timeout_in_fallback_is_unknown() -> None:
    checker = checker_with(
        FakeResolver(MX=dns.resolver.NoAnswer, A=dns.exception.Timeout, AAAA=dns.resolver.NoAnswer)
    )
    assert await checker.check("acme-corp.com") == TIMEOUT


async def test_resolver_ignoring_its_lifetime_is_cut_off() -> None:
    checker = checker_with(FakeResolver(MX="hang"), timeout=0.2)
    started = time.monotonic()
    assert await checker.check("acme-corp.com") == TIMEOUT
    assert time.monotonic() - started < 1.0
