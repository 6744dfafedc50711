"""The bounded floods (conformance/attacker/flood.py) against scripted loopback servers: they stop by themselves at
their count and their duration, and count what the server did to their connections."""

from __future__ import annotations

import asyncio
import time

import pytest

from conformance.attacker.flood import ConnectionFlood, paced


def test_a_paced_flood_stops_at_its_count():
    sent = []

    async def action(i):
        sent.append(i)

    pacing = asyncio.run(paced(action, rate=1000, duration=5, count=50))
    assert sent == list(range(50)) and pacing.sent == 50 and pacing.elapsed < 1


def test_a_paced_flood_stops_at_its_duration_and_keeps_its_rate():
    pacing = asyncio.run(paced(lambda i: asyncio.sleep(0), rate=100, duration=0.5, count=10_000))
    assert 40 <= pacing.sent <= 51 and 0.45 <= pacing.elapsed < 0.7
    assert 80 <= pacing.rate <= 110


def test_an_action_that_blocks_cannot_hold_the_flood_past_its_duration():
    async def stuck(_i):
        await asyncio.Event().wait()  # the IUT stopped reading: the write never completes

    started = time.monotonic()
    pacing = asyncio.run(paced(stuck, rate=10, duration=0.3, count=100))
    assert pacing.sent == 0 and time.monotonic() - started < 1


async def _server(behaviour):
    """A loopback server: 'keep' holds connections and reads, 'close-after-3' closes every connection after its 3rd
    accepted one at once."""
    accepted = []

    async def handle(reader, writer):
        accepted.append(writer)
        if behaviour == "close-after-3" and len(accepted) > 3:
            writer.close()
            return
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], accepted


@pytest.mark.parametrize("style", ["silent", "trickling", "churning"])
def test_a_connection_flood_is_bounded_and_counts_what_the_server_did(style):
    async def run():
        server, port, accepted = await _server("close-after-3")
        flood = ConnectionFlood(("127.0.0.1", port), b"<hello/>", style=style, count=12, duration=0.6, rate=100,
                                trickle_interval=0.05)
        started = time.monotonic()
        tally = await flood.run()
        server.close()
        await server.wait_closed()
        return tally, time.monotonic() - started, len(accepted)

    tally, took, accepted = asyncio.run(run())
    assert tally.attempted == 12 and tally.opened == 12 and accepted == 12
    assert took < 0.6 + 2
    if style == "churning":
        assert tally.cut <= 12  # closed by the flood itself; the server's closes may race with it
    else:
        assert tally.cut == 9 and tally.limited and tally.first_cut_after is not None


def test_held_connections_go_when_the_flood_is_released():
    async def run():
        server, port, _ = await _server("keep")
        flood = ConnectionFlood(("127.0.0.1", port), b"<hello/>", style="silent", count=5, duration=10, rate=100)
        task = asyncio.ensure_future(flood.run())
        await flood.at_full_strength()
        started = time.monotonic()
        flood.release()
        tally = await asyncio.wait_for(task, 5)
        server.close()
        return tally, time.monotonic() - started

    tally, took = asyncio.run(run())
    assert tally.opened == 5 and tally.cut == 0 and not tally.limited and took < 2


def test_a_refusing_target_is_counted_not_raised():
    async def run():
        server, port, _ = await _server("keep")
        server.close()
        await server.wait_closed()  # nothing listens there any more
        return await ConnectionFlood(("127.0.0.1", port), b"x", style="silent", count=3, duration=0.5,
                                     rate=100).run()

    tally = asyncio.run(run())
    assert tally.attempted == 3 and tally.refused == 3 and tally.opened == 0
