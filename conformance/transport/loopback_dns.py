"""A DNS responder on loopback for the harness's own domains only: SRV and A records that send an IUT's
server-to-server connections for, say, remote.test to the harness, so no /etc/hosts edit and no real DNS is
needed. Everything else gets NXDOMAIN (REFUSED for other classes of question), at once.

Runs on the harness event loop (UDP), only while a test needs it. dnspython builds and parses the messages.
"""

from __future__ import annotations

import asyncio

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 5


class LoopbackDns(asyncio.DatagramProtocol):
    def __init__(self, records: dict[tuple[str, str], list[str]]):
        """`records`: (name, type) -> rdata texts, e.g. ("_xmpp-server._tcp.remote.test.", "SRV") ->
        ["0 0 15271 localhost."]. Names are absolute (trailing dot)."""
        self.records = {(name.lower(), rtype): values for (name, rtype), values in records.items()}
        self.transport: asyncio.DatagramTransport | None = None
        self.answered: list[str] = []  # questions seen, for the evidence

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return  # not DNS: nothing to answer
        response = self.answer(query)
        if self.transport is not None:
            self.transport.sendto(response.to_wire(), addr)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        name, rtype = question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype)
        self.answered.append(f"{name} {rtype}")
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        values = self.records.get((name, rtype))
        if values:
            response.answer.append(dns.rrset.from_text_list(question.name, TTL, "IN", rtype, values))
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response  # a known name without this type: NOERROR, no data


async def serve(port: int, records: dict[tuple[str, str], list[str]], host: str = "127.0.0.1"):
    """Start answering on host:port (UDP); returns (transport, protocol)."""
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(lambda: LoopbackDns(records), local_addr=(host, port),
                                               reuse_port=False)
