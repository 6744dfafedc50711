"""The client's TCP connection, with TLS on it once started (tls.py): bytes in and out, every wait bounded by the
caller. Errors are the client's to judge: ConnectionLost when the server went away, TlsFailure when TLS did; after a
TLS failure nothing is sent unless the caller asks (`abort(alert=True)`).
"""

from __future__ import annotations

import asyncio
import ssl

from .tls import READ, ServerHelloCheck, TlsFailure, TlsSession


class ConnectionLost(Exception):
    """The server closed or reset the connection."""


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        self.tls: TlsSession | None = None
        self.failed = False  # TLS failed: the session can carry nothing more

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> "Connection":
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=READ), timeout)
        except asyncio.TimeoutError:
            raise ConnectionLost(f"no TCP connection to {host}:{port} within {timeout:g}s") from None
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        return cls(reader, writer)

    @property
    def encrypted(self) -> bool:
        return self.tls is not None and self.tls.established

    async def _raw_read(self) -> bytes:
        try:
            return await self._reader.read(READ)
        except OSError as exc:  # ConnectionResetError among them
            raise ConnectionLost(f"the connection was reset ({exc.strerror or exc})") from None

    async def _raw_write(self, data: bytes) -> None:
        if not data:
            return
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            raise ConnectionLost(f"the connection broke while writing ({exc})") from None

    async def _flush_tls(self) -> None:
        if self.tls is not None:
            await self._raw_write(self.tls.outgoing())

    # -- TLS -------------------------------------------------------------------------------------------------------

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str, timeout: float,
                        check: ServerHelloCheck | None = None, session=None) -> None:
        """The TLS handshake, as the client (SNI and the name checked: `server_hostname`; the ServerHello looked at
        by `check` first), or of a `session` with TlsSession's interface made elsewhere. On failure the client's
        own alert, if it has one, goes to the server before TlsFailure is raised."""
        self.tls = session if session is not None else TlsSession(context, server_hostname, check)

        async def handshake() -> None:
            while not self.tls.handshake():
                await self._flush_tls()
                data = await self._raw_read()
                if not data:
                    raise TlsFailure("the server closed the connection during the TLS handshake", "broken")
                self.tls.feed(data)
            await self._flush_tls()
        try:
            await asyncio.wait_for(handshake(), timeout)
        except asyncio.TimeoutError:
            self.failed = True
            raise TlsFailure(f"no TLS handshake within {timeout:g}s", "broken") from None
        except ConnectionLost as exc:
            self.failed = True
            raise TlsFailure(f"{exc} during the TLS handshake", "broken") from None
        except TlsFailure:
            self.failed = True
            try:
                await self._flush_tls()
            except ConnectionLost:
                pass
            raise

    # -- the application's bytes -------------------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        if self.failed:
            raise ConnectionLost("TLS failed on this connection: nothing more can be sent")
        if self.tls is None:
            await self._raw_write(data)
            return
        try:
            self.tls.write(data)
        except TlsFailure:
            self.failed = True
            raise
        await self._flush_tls()

    async def recv(self) -> bytes:
        """The next plaintext bytes from the server (decrypted if TLS is on). ConnectionLost at its end."""
        while True:
            if self.tls is not None:
                try:
                    data = self.tls.read()
                except TlsFailure:
                    self.failed = True
                    raise
                if data == b"":
                    raise ConnectionLost("the server ended TLS (close_notify)")
                await self._flush_tls()  # what TLS 1.3 post-handshake messages may need answered
                if data is not None:
                    return data
            raw = await self._raw_read()
            if not raw:
                raise ConnectionLost("the server closed the connection")
            if self.tls is None:
                return raw
            self.tls.feed(raw)

    # -- the end -----------------------------------------------------------------------------------------------------

    async def close(self, timeout: float = 2.0) -> None:
        """Orderly: TLS close_notify (if TLS is up and sound), then TCP FIN."""
        try:
            if self.tls is not None and not self.failed:
                self.tls.close_notify()
                await asyncio.wait_for(self._flush_tls(), timeout)
        except (ConnectionLost, asyncio.TimeoutError):
            pass
        await self._shut(timeout)

    async def abort(self, *, alert: bool, timeout: float = 2.0) -> None:
        """After a TLS failure: send what TLS has to say (its alert) if `alert`, then close the socket."""
        if alert:
            try:
                await asyncio.wait_for(self._flush_tls(), timeout)
            except (ConnectionLost, asyncio.TimeoutError):
                pass
        await self._shut(timeout)

    async def _shut(self, timeout: float) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), timeout)
        except (OSError, asyncio.TimeoutError, RuntimeError):
            pass
