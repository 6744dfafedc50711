"""Flaw 'early-data-acted-on': the direct-TLS door takes TLS 1.3 early data (0-RTT) and acts on it at once.

Some servers turn 0-RTT on for fast reconnection. This door does it the unsafe way: tickets allow early data, the
early data goes to the stream session as soon as it arrives (before the client's Finished, so its answers leave as
0.5-RTT data), and OpenSSL's single-use tickets are off, so a recorded ClientHello replayed later is served again
(RFC 8446 §8, §E.5). It breaks IMPP-5.8-4.

Python's ssl module has no early data, so the TLS end is `conformance.transport.early_data`; the decrypted stream
reaches an ordinary `Session` over a socket pair, which keeps the session code unaware of the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Awaitable, Callable

from conformance.transport.early_data import ServerContext, TlsEnded, TlsFailed

if TYPE_CHECKING:
    from .service import Service

READ = 64 * 1024
CLOSE_SECONDS = 2.0


def server_context(service: "Service") -> ServerContext:
    return ServerContext(str(service.certs.cert), str(service.certs.key), anti_replay=False)


async def serve(service: "Service", context: ServerContext, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter,
                accept: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> None:
    """One client connection: TLS here, the stream session (`accept`) behind a socket pair."""
    tls = context.connection()
    near, far = socket.socketpair()
    inner_reader, inner_writer = await asyncio.open_connection(sock=near, limit=READ)
    session = asyncio.create_task(_session(far, accept))

    async def client_to_session() -> None:
        while data := await reader.read(READ):
            plaintext, back = tls.receive(data)
            if back:
                writer.write(back)
            if plaintext:
                inner_writer.write(plaintext)
            await asyncio.gather(writer.drain(), inner_writer.drain())

    async def session_to_client() -> None:
        while data := await inner_reader.read(READ):
            writer.write(tls.send(data))
            await writer.drain()

    try:
        pumps = [asyncio.create_task(client_to_session()), asyncio.create_task(session_to_client())]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for pump in pumps:
            with contextlib.suppress(asyncio.CancelledError, TlsEnded, TlsFailed, ConnectionError, OSError):
                await pump
    finally:
        for stream in (inner_writer, writer):
            stream.close()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(session, CLOSE_SECONDS)
        if not session.done():
            session.cancel()
        service.log("early-data door: connection closed")


async def _session(sock: socket.socket,
                   accept: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> None:
    reader, writer = await asyncio.open_connection(sock=sock, limit=READ)
    try:
        await accept(reader, writer)
    finally:
        writer.close()
