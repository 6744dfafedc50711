"""The harness's loopback DNS answers for its own domains only, at once, and nothing else."""

from __future__ import annotations

import asyncio

import dns.asyncquery
import dns.message
import dns.rcode

from conformance.transport import loopback_dns

RECORDS = {("_xmpp-server._tcp.remote.test.", "SRV"): ["0 0 15271 localhost."], ("localhost.", "A"): ["127.0.0.1"]}


def test_answers_its_records_and_nxdomain_for_the_rest():
    async def body():
        transport, protocol = await loopback_dns.serve(0, RECORDS)
        port = transport.get_extra_info("sockname")[1]
        try:
            async def ask(name, rtype):
                return await dns.asyncquery.udp(dns.message.make_query(name, rtype), "127.0.0.1", port=port,
                                                timeout=2)
            srv = await ask("_xmpp-server._tcp.Remote.Test.", "SRV")
            assert srv.rcode() == dns.rcode.NOERROR
            assert [r.to_text() for r in srv.answer[0]] == ["0 0 15271 localhost."]
            assert (await ask("localhost.", "A")).answer[0][0].to_text() == "127.0.0.1"
            assert (await ask("elsewhere.example.", "A")).rcode() == dns.rcode.NXDOMAIN
            nodata = await ask("localhost.", "AAAA")
            assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
            assert protocol.answered[0] == "_xmpp-server._tcp.remote.test. SRV"
        finally:
            transport.close()
    asyncio.run(asyncio.wait_for(body(), 10))


def test_ignores_bytes_that_are_not_dns():
    protocol = loopback_dns.LoopbackDns(RECORDS)
    protocol.datagram_received(b"\x00garbage", ("127.0.0.1", 1))  # no transport needed: nothing is answered
    assert protocol.answered == []
