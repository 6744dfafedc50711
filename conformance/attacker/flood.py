"""Bounded load against the target: paced request floods and pre-authentication connection floods (IMPP-5.3).

Nothing here knows a protocol. A request flood calls an `action` the adapter gives it (send one fetch) at a steady
rate; a connection flood opens TCP connections to the target and writes the `opener` the adapter gives it (a
stream header). Every flood stops by itself at the first of its count and its duration, is aimed only at the
address it is given (the profile's target; the caller resolves it), and keeps no more than a counter per
connection of what the IUT answers, so the harness's memory does not grow with the load.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import Awaitable, Callable

READ_CHUNK = 4096
CONNECT_TIMEOUT = 3.0  # one connection attempt; a target that takes longer is already refusing service


@dataclasses.dataclass
class Pacing:
    """What a paced flood achieved."""

    target_rate: float
    sent: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


async def paced(action: Callable[[int], Awaitable[None]], *, rate: float, duration: float, count: int,
                pacing: Pacing | None = None) -> Pacing:
    """Call `action(i)` about `rate` times a second until `count` calls or `duration` seconds, whichever comes first.
    An action that blocks (the IUT stops reading, so the socket buffer fills) slows the flood down: the achieved rate
    is part of the result, and a cancelled flood keeps what it counted in `pacing`."""
    loop = asyncio.get_running_loop()
    pacing = pacing or Pacing(target_rate=rate)
    start = loop.time()
    deadline = start + duration
    interval = 1.0 / rate
    try:
        for i in range(count):
            now = loop.time()
            if now >= deadline:
                break
            due = start + i * interval
            if due > now:
                await asyncio.sleep(min(due - now, deadline - now))  # pacing to a rate, not waiting for an event
                if loop.time() >= deadline:
                    break
            remaining = deadline - loop.time()
            try:
                await asyncio.wait_for(action(i), remaining)
            except asyncio.TimeoutError:
                break
            pacing.sent += 1
    finally:
        pacing.elapsed = loop.time() - start
    return pacing


@dataclasses.dataclass
class ConnectionTally:
    """What became of the connections of a connection flood."""

    style: str
    attempted: int = 0
    opened: int = 0
    refused: int = 0  # the connection could not be made (refused, reset, timed out)
    cut: int = 0  # the IUT closed or reset it while the flood wanted it open
    answered_bytes: int = 0
    first_cut_after: float | None = None  # seconds from the flood's start to the first connection the IUT ended
    elapsed: float = 0.0

    @property
    def limited(self) -> bool:
        """Did the IUT push back at all: refuse connections or end some of them?"""
        return self.refused > 0 or self.cut > 0

    def __str__(self) -> str:
        first = f", first after {self.first_cut_after:.2f}s" if self.first_cut_after is not None else ""
        return (f"{self.style} flood: {self.attempted} connection(s) tried in {self.elapsed:.1f}s, {self.opened} "
                f"opened, {self.refused} refused, {self.cut} ended by the IUT{first}")


class ConnectionFlood:
    """Pre-authentication connections to `address`, from `source` if given:

    - "silent": open up to `count` connections, write the opener, then say nothing until the flood ends;
    - "trickling": the same, but write the opener one byte at a time, a byte per connection every
      `trickle_interval` seconds, so that an idle timeout alone never fires;
    - "churning": open a connection, write the opener, close it, again, at `rate` a second (so at most
      `rate * duration`, and `count`, connections).
    """

    def __init__(self, address: tuple[str, int], opener: bytes, *, style: str, count: int, duration: float,
                 rate: float, source: str | None = None, trickle_interval: float = 0.25):
        if style not in ("silent", "trickling", "churning"):
            raise ValueError(f"unknown connection flood style {style!r}")
        self.address = address
        self.opener = opener
        self.style = style
        self.count = count
        self.duration = duration
        self.rate = rate
        self.source = source
        self.trickle_interval = trickle_interval
        self.tally = ConnectionTally(style)
        self._start = 0.0
        self._held: list[asyncio.Task] = []
        self._full = asyncio.Event()  # every connection tried (or, churning, half the duration gone)
        self._released = asyncio.Event()  # the caller is done: held connections go before the flood's end

    async def at_full_strength(self) -> None:
        """Returns once the flood is at its height, or has ended (whichever is first)."""
        while self._start == 0.0:  # not started yet: it starts on the same loop at its next turn
            await asyncio.sleep(0)
        deadline = self._start + self.duration
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(self._full.wait(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            pass

    def release(self) -> None:
        self._released.set()

    async def run(self) -> ConnectionTally:
        loop = asyncio.get_running_loop()
        self._start = loop.time()
        deadline = self._start + self.duration
        if self.style == "churning":
            loop.call_later(self.duration / 2, self._full.set)
        try:
            await paced(lambda i: self._one(deadline), rate=self.rate, duration=self.duration, count=self.count)
            self._full.set()
            if self._held:  # the held connections stay until the flood's end (or its release), then all go
                await asyncio.wait(self._held, timeout=max(0.0, deadline - loop.time()) + 1.0)
        finally:
            for task in self._held:
                task.cancel()
            if self._held:
                await asyncio.wait(self._held, timeout=2.0)
            self.tally.elapsed = loop.time() - self._start
        return self.tally

    async def _one(self, deadline: float) -> None:
        self.tally.attempted += 1
        try:
            reader, writer = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            self.tally.refused += 1
            return
        self.tally.opened += 1
        if self.style == "churning":
            try:
                writer.write(self.opener)
                await asyncio.wait_for(writer.drain(), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                self._cut()
            finally:
                writer.transport.abort()
            return
        self._held.append(asyncio.ensure_future(self._hold(reader, writer, deadline)))

    async def _connect(self):
        if self.source is None:
            return await asyncio.open_connection(*self.address)
        return await asyncio.open_connection(*self.address, local_addr=(self.source, 0))

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # 300 connections x default buffers add up
        reading = asyncio.ensure_future(self._drain_answers(reader, deadline))
        try:
            if self.style == "silent":
                writer.write(self.opener)
            else:
                for byte in self.opener:
                    if reading.done() or loop.time() >= deadline:
                        break
                    writer.write(bytes([byte]))
                    await asyncio.wait([reading], timeout=min(self.trickle_interval, deadline - loop.time()))
            released = asyncio.ensure_future(self._released.wait())
            await asyncio.wait([reading, released], timeout=max(0.0, deadline - loop.time()),
                               return_when=asyncio.FIRST_COMPLETED)
            released.cancel()
            if reading.done() and reading.result():
                self._cut()
        except OSError:
            self._cut()
        finally:
            reading.cancel()
            writer.transport.abort()

    async def _drain_answers(self, reader: asyncio.StreamReader, deadline: float) -> bool:
        """Read and count what the IUT says until it ends the connection (True) or the flood ends (False). An end
        seen only once the flood is over counts for nothing: the flood no longer wanted the connection open, and the
        harness's own teardown of the others may be what the IUT answered."""
        loop = asyncio.get_running_loop()
        try:
            while loop.time() < deadline:
                data = await asyncio.wait_for(reader.read(READ_CHUNK), deadline - loop.time())
                if not data:
                    return loop.time() < deadline
                self.tally.answered_bytes += len(data)
        except (OSError, asyncio.IncompleteReadError):
            return loop.time() < deadline
        except asyncio.TimeoutError:
            return False
        return False

    def _cut(self) -> None:
        self.tally.cut += 1
        if self.tally.first_cut_after is None:
            self.tally.first_cut_after = asyncio.get_running_loop().time() - self._start
