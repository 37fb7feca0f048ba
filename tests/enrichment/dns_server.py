"""A small authoritative DNS server on 127.0.0.1 (UDP) for MX tests, built with dnspython's messages.

Each name maps to a behaviour: ``NXDOMAIN``, ``SERVFAIL``, ``SILENT`` (never answers), or a dict of
record type -> list of rdata texts (a missing type is answered NOERROR with no records, "NODATA"); a
type may also map to ``SILENT`` or ``SERVFAIL``. Unknown names are REFUSED. Every query is recorded.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

NXDOMAIN = "NXDOMAIN"
SERVFAIL = "SERVFAIL"
SILENT = "SILENT"

Zone = dict[str, Any]


@dataclass
class DnsServer(asyncio.DatagramProtocol):
    zones: Zone
    queries: list[tuple[str, str]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        behaviour = self.zones.get(name, "REFUSED")
        if isinstance(behaviour, dict):
            behaviour = behaviour.get(rdtype, [])
        if behaviour == SILENT:
            return
        response = dns.message.make_response(query)
        if isinstance(behaviour, list):
            response.flags |= dns.flags.AA
            if behaviour:
                response.answer.append(
                    dns.rrset.from_text_list(
                        question.name, 300, dns.rdataclass.IN, question.rdtype, behaviour
                    )
                )
        else:
            response.set_rcode(dns.rcode.from_text(behaviour))
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


async def start_dns_server(zones: Zone) -> DnsServer:
    loop = asyncio.get_running_loop()
    _, server = await loop.create_datagram_endpoint(lambda: DnsServer(zones), local_addr=("127.0.0.1", 0))
    assert server.transport is not None
    server.port = server.transport.get_extra_info("sockname")[1]
    return server


def closed_udp_port() -> int:
    """A port on 127.0.0.1 with nobody listening (bound, read, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
