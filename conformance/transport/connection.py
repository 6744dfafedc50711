"""A TCP connection with TLS layered in memory (ssl.MemoryBIO), so the harness sees and records both the bytes on
the socket and the plaintext, and decides itself when (or whether) TLS starts.

This is what lets a protocol adapter skip, reorder or forge steps: nothing here knows any protocol.
"""

from __future__ import annotations

import asyncio
import ssl

from .wire import Endpoint, Recorder

READ_CHUNK = 64 * 1024
CLOSE_TIMEOUT = 1.0  # seconds for closing TLS and TCP politely; then the connection is dropped


class ConnectionClosed(Exception):
    """The peer closed the connection (or reset it)."""


class HandshakeFailed(Exception):
    """TLS could not be established; `alert` holds the reason OpenSSL gave."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: Endpoint,
                 recorder: Recorder):
        self._reader = reader
        self._writer = writer
        self.endpoint = endpoint
        self.recorder = recorder
        self._tls: ssl.SSLObject | None = None
        self._incoming: ssl.MemoryBIO | None = None
        self._outgoing: ssl.MemoryBIO | None = None
        self.closed = False
        self.ended_by: str | None = None  # why the connection failed (reset, TLS error), beyond an orderly close
        sock = writer.get_extra_info("socket")
        if sock is not None:
            endpoint.local = sock.getsockname()[:2]
            endpoint.remote = sock.getpeername()[:2]

    @classmethod
    async def open(cls, host: str, port: int, *, role: str, recorder: Recorder, timeout: float) -> "Connection":
        endpoint = recorder.endpoint(role)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=READ_CHUNK), timeout)
        except asyncio.TimeoutError:
            recorder.event(endpoint.label, f"connect to {host}:{port} timed out after {timeout:g}s")
            raise ConnectionError(f"connecting to {host}:{port} timed out after {timeout:g}s") from None
        except OSError as exc:
            recorder.event(endpoint.label, f"connect to {host}:{port} failed: {exc}")
            raise ConnectionError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        recorder.event(endpoint.label, f"connected {host}:{port}")
        return cls(reader, writer, endpoint, recorder)

    @property
    def label(self) -> str:
        return self.endpoint.label

    @property
    def tls_active(self) -> bool:
        return self._tls is not None

    @property
    def tls_version(self) -> str | None:
        return self._tls.version() if self._tls else None

    def tls_object(self) -> ssl.SSLObject | None:
        return self._tls

    # -- raw socket ------------------------------------------------------------------------------------------

    async def _write_socket(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionClosed("connection already closed")
        self.recorder.add(self.label, "out", "tcp", data)
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self.closed = True
            self.ended_by = self.ended_by or f"write failed: {exc}"
            raise ConnectionClosed(f"write failed: {exc}") from None

    async def _read_socket(self) -> bytes:
        try:
            data = await self._reader.read(READ_CHUNK)
        except (ConnectionError, OSError) as exc:
            self.closed = True
            self.ended_by = f"read failed: {exc}"
            self.recorder.event(self.label, f"read failed: {exc}")
            raise ConnectionClosed(f"read failed: {exc}") from None
        if not data:
            self.closed = True
            self.recorder.event(self.label, "peer closed the connection")
            raise ConnectionClosed("peer closed the connection")
        self.recorder.add(self.label, "in", "tcp", data)
        return data

    # -- application layer -------------------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        self.recorder.add(self.label, "out", "app", data)
        if self._tls is None:
            await self._write_socket(data)
            return
        try:
            self._tls.write(data)
        except ssl.SSLError as exc:
            raise ConnectionClosed(f"TLS write failed: {exc}") from None
        await self._flush_tls()

    async def recv(self) -> bytes:
        """Next plaintext bytes; raises ConnectionClosed at EOF."""
        if self._tls is None:
            data = await self._read_socket()
            self.recorder.add(self.label, "in", "app", data)
            return data
        while True:
            try:
                data = self._tls.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                self._incoming.write(await self._read_socket())
                continue
            except ssl.SSLZeroReturnError:
                self.closed = True
                self.recorder.event(self.label, "peer sent TLS close_notify")
                raise ConnectionClosed("peer closed TLS") from None
            except ssl.SSLError as exc:
                self.closed = True
                self.ended_by = f"TLS error: {exc.reason or exc}"
                self.recorder.event(self.label, f"TLS error: {exc.reason or exc}")
                await self._flush_tls(quiet=True)
                raise ConnectionClosed(f"TLS error: {exc.reason or exc}") from None
            await self._flush_tls(quiet=True)  # TLS 1.3 may answer post-handshake messages
            if not data:  # the TLS layer reports end of stream without an alert
                self.closed = True
                self.recorder.event(self.label, "peer ended the TLS stream")
                raise ConnectionClosed("peer ended the TLS stream")
            self.recorder.add(self.label, "in", "app", data)
            return data

    async def _flush_tls(self, quiet: bool = False) -> None:
        if self._outgoing is None:
            return
        pending = self._outgoing.read()
        if pending:
            try:
                await self._write_socket(pending)
            except ConnectionClosed:
                if not quiet:
                    raise

    async def start_tls(self, context: ssl.SSLContext, *, server_hostname: str | None = None,
                        server_side: bool = False, timeout: float) -> None:
        """Run the TLS handshake over the existing socket; plaintext before this point stays plaintext."""
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self.recorder.event(self.label, "TLS handshake starts")

        async def handshake() -> None:
            while True:
                try:
                    self._tls.do_handshake()
                    await self._flush_tls()
                    return
                except ssl.SSLWantReadError:
                    await self._flush_tls()
                    self._incoming.write(await self._read_socket())
                except ssl.SSLError as exc:
                    await self._flush_tls(quiet=True)
                    raise HandshakeFailed(exc.reason or str(exc)) from None

        try:
            await asyncio.wait_for(handshake(), timeout)
        except asyncio.TimeoutError:
            self.recorder.event(self.label, f"TLS handshake timed out after {timeout:g}s")
            raise HandshakeFailed(f"no TLS handshake within {timeout:g}s") from None
        except HandshakeFailed as exc:
            self.recorder.event(self.label, f"TLS handshake failed: {exc.reason}")
            raise
        except ConnectionClosed as exc:
            raise HandshakeFailed(f"connection closed during the TLS handshake ({exc})") from None
        self.endpoint.tls = self._tls.version()
        self.recorder.event(self.label, f"TLS established: {self._tls.version()} {self._tls.cipher()[0]}")

    def abort(self) -> None:
        """Drop the connection at once, as a crashed client or a lost network would: no TLS close_notify, nothing
        more written. The peer sees the connection end without any closing handshake of the protocol above."""
        if not self.closed:
            self.recorder.event(self.label, "connection dropped (no protocol close, no TLS close_notify)")
        self.closed = True
        transport = self._writer.transport
        if transport is not None:
            transport.abort()

    async def close(self) -> None:
        """Close TLS (close_notify) and TCP, within CLOSE_TIMEOUT: a peer that reads nothing more (its buffers full
        of what the harness sent) cannot hold the harness, nor keep the socket open; it is dropped instead."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_TIMEOUT
        try:
            if not self.closed:
                if self._tls is not None:
                    try:
                        self._tls.unwrap()
                    except ssl.SSLError:
                        pass
                    await asyncio.wait_for(self._flush_tls(quiet=True), CLOSE_TIMEOUT)
                self.closed = True
            self._writer.close()
            await asyncio.wait_for(self._writer.wait_closed(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            self.closed = True
            self.recorder.event(self.label, f"the peer took nothing more within {CLOSE_TIMEOUT:g}s: connection "
                                            f"dropped")
            transport = self._writer.transport
            if transport is not None:
                transport.abort()
        except (ConnectionError, OSError, ssl.SSLError):
            pass
