"""Does an e-mail domain accept mail? An MX look-up with dnspython's asyncio resolver.

``valid``: an MX record, or (RFC 5321 implicit MX) no MX but an A/AAAA record.
``invalid``: the domain does not exist, has neither MX nor address records, or publishes a null MX
(RFC 7505, "this domain accepts no mail").
``unknown``: anything that stops us from knowing (timeout, no reachable server, SERVFAIL, refusal...).
The whole check runs under one deadline (``DNS_TIMEOUT_SECONDS``) and never raises.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import structlog

from leadflow.enrichment.geoip import StepStatus

log = structlog.get_logger("leadflow.enrichment")

MxVerdict = Literal["valid", "invalid", "unknown", "skipped"]

# Extra time allowed on top of the resolver's own lifetime before the hard stop.
GRACE_SECONDS = 0.25
CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class MxOutcome:
    verdict: MxVerdict
    status: StepStatus
    detail: str


DISABLED = MxOutcome("skipped", "skipped", "MX check disabled")
BAD_DOMAIN = MxOutcome("invalid", "skipped", "invalid domain")
MX_FOUND = MxOutcome("valid", "ok", "MX record found")
ADDRESS_FALLBACK = MxOutcome("valid", "ok", "no MX, address record found")
NXDOMAIN = MxOutcome("invalid", "ok", "domain does not exist")
NULL_MX = MxOutcome("invalid", "ok", "null MX: domain accepts no mail")
NO_RECORDS = MxOutcome("invalid", "ok", "no MX or address records")
TIMEOUT = MxOutcome("unknown", "failed", "DNS timeout")
NO_SERVER = MxOutcome("unknown", "failed", "no DNS server answered")
NO_CONFIGURATION = MxOutcome("unknown", "failed", "no DNS resolver configuration")
BAD_SETTING = MxOutcome("unknown", "failed", "invalid DNS_NAMESERVERS setting")


def _error(exc: BaseException) -> MxOutcome:
    return MxOutcome("unknown", "failed", f"DNS error {type(exc).__name__}")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("port must be 1-65535")
    return int(text)


def parse_nameserver(value: str) -> dns.nameserver.Do53Nameserver:
    """``127.0.0.1``, ``127.0.0.1:5353``, ``::1`` or ``[::1]:5353`` -> a nameserver; ValueError otherwise."""
    text = value.strip()
    port = 53
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError("expected [address]:port")
        if rest:
            port = _port(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text)
    else:
        host = text
    address = ipaddress.ip_address(host)
    return dns.nameserver.Do53Nameserver(str(address), port)


def build_resolver(
    nameservers: Sequence[str], timeout: float, resolv_conf: str = "/etc/resolv.conf"
) -> dns.asyncresolver.Resolver:
    """A resolver for the given servers, or the system's (``resolv_conf``) when none are given.

    Raises ValueError for a malformed server and ``dns.resolver.NoResolverConfiguration`` when the
    system has none.
    """
    if nameservers:
        servers = [parse_nameserver(s) for s in nameservers]
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = servers
    else:
        resolver = dns.asyncresolver.Resolver(filename=resolv_conf)
    # One attempt gets a share of the budget, so a dead server leaves time for the next one (or for
    # one retransmission when there is a single server); the lifetime caps the whole look-up.
    resolver.timeout = timeout / max(2, len(resolver.nameservers))
    resolver.lifetime = timeout
    resolver.cache = dns.resolver.LRUCache(CACHE_SIZE)
    return resolver


class MxChecker:
    """Checks domains against one resolver built at start; ``check`` never raises."""

    def __init__(
        self, *, nameservers: Sequence[str], timeout: float, resolv_conf: str = "/etc/resolv.conf"
    ) -> None:
        self.timeout = max(timeout, 0.01)
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._unavailable: MxOutcome | None = None
        try:
            self._resolver = build_resolver(nameservers, self.timeout, resolv_conf)
        except ValueError:
            log.warning("dns_nameservers_invalid")
            self._unavailable = BAD_SETTING
        except Exception as exc:  # NoResolverConfiguration (no /etc/resolv.conf) or worse
            log.warning("dns_resolver_unconfigured", error=type(exc).__name__)
            self._unavailable = NO_CONFIGURATION

    async def check(self, domain: str) -> MxOutcome:
        """The verdict for a normalised domain (see ``email_domain.normalise_domain``)."""
        resolver = self._resolver
        if resolver is None:
            return self._unavailable or NO_CONFIGURATION
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            async with asyncio.timeout(self.timeout + GRACE_SECONDS):
                return await self._check(resolver, domain, deadline)
        except TimeoutError:
            return TIMEOUT
        except Exception as exc:  # whatever a resolver may throw: the verdict is "unknown"
            return _error(exc)

    @staticmethod
    def _remaining(deadline: float) -> float:
        return max(deadline - asyncio.get_running_loop().time(), 0.01)

    async def _check(self, resolver: dns.asyncresolver.Resolver, domain: str, deadline: float) -> MxOutcome:
        name = dns.name.from_text(domain)
        try:
            answer = await resolver.resolve(
                name, dns.rdatatype.MX, lifetime=self._remaining(deadline), search=False
            )
        except dns.resolver.NXDOMAIN:
            return NXDOMAIN
        except dns.resolver.NoAnswer:
            return await self._address_fallback(resolver, name, deadline)
        except dns.exception.Timeout:
            return TIMEOUT
        except dns.resolver.NoNameservers:
            return NO_SERVER
        exchanges = [getattr(rdata, "exchange", None) for rdata in answer]
        if exchanges and all(exchange == dns.name.root for exchange in exchanges):
            return NULL_MX
        return MX_FOUND

    async def _address_fallback(
        self, resolver: dns.asyncresolver.Resolver, name: dns.name.Name, deadline: float
    ) -> MxOutcome:
        lifetime = self._remaining(deadline)
        results = await asyncio.gather(
            resolver.resolve(name, dns.rdatatype.A, lifetime=lifetime, search=False),
            resolver.resolve(name, dns.rdatatype.AAAA, lifetime=lifetime, search=False),
            return_exceptions=True,
        )
        if any(isinstance(r, dns.resolver.Answer) for r in results):
            return ADDRESS_FALLBACK
        if all(isinstance(r, dns.resolver.NoAnswer | dns.resolver.NXDOMAIN) for r in results):
            return NO_RECORDS
        errors = [r for r in results if isinstance(r, BaseException)]
        if any(isinstance(e, dns.exception.Timeout) for e in errors):
            return TIMEOUT
        if any(isinstance(e, dns.resolver.NoNameservers) for e in errors):
            return NO_SERVER
        return _error(errors[0])
