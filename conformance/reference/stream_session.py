"""What every inbound stream of the reference service has in common, client-to-server (c2s.py) and
server-to-server (s2s.py): the read loop with its idle timeouts, the bounded parser and its restarts, writing with
an output-buffer limit, ending a stream with a stream error (RFC 6120 §4.9), and turning a bug into
<internal-server-error/> rather than silence. The subclasses say what a stream header and a unit mean.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import traceback
from typing import TYPE_CHECKING

from conformance.adapters.xmpp.codec.stanza import STREAM_CLOSE, stream_error
from conformance.adapters.xmpp.codec.xml import (Element, Limits, StreamClosed, StreamOpened, StreamParser,
                                                 UnitReceived, XmlError, to_bytes)

from .tls_lenience import HandshakeFailureKeptOpen

if TYPE_CHECKING:
    from .service import Service

READ_CHUNK = 65536
DRAIN_SECONDS = 5.0  # a peer that takes nothing of what we wrote for this long is dropped
TLS_HANDSHAKE_SECONDS = 10.0


class InboundStream:
    """One accepted connection and the streams on it (a new one after each restart: STARTTLS, SASL)."""

    content_ns: str  # the stream's content namespace: jabber:client or jabber:server

    def __init__(self, service: "Service", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.service = service
        self.reader = reader
        self.writer = writer
        self.id = secrets.token_hex(6)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.tls = False
        self.closed = False
        self.closing = False  # we ended the stream (or the peer closed it): the session is over
        self._restart = False  # the next bytes start a new stream (after <proceed/> or SASL <success/>)
        self.parser = self._new_parser()

    # -- what subclasses say ------------------------------------------------------------------------------------------

    def _new_parser(self) -> StreamParser:
        return StreamParser(Limits(max_unit_bytes=self.service.config.max_unit_bytes))

    def _idle_timeout(self) -> float:
        """How long the peer may say nothing now (shorter before it authenticated)."""
        raise NotImplementedError

    def _on_stream_open(self, event: StreamOpened) -> None:
        raise NotImplementedError

    async def _on_unit(self, unit: Element) -> None:
        raise NotImplementedError

    def _before_stream_error(self) -> None:
        """Called before a stream error is written (c2s: our stream header first, if none went out yet)."""

    def _ended(self) -> None:
        """The connection is gone."""
        self.log("closed")

    def log(self, text: str) -> None:
        raise NotImplementedError

    # -- output ---------------------------------------------------------------------------------------------------------

    def _writable(self) -> bool:
        return not self.closed

    def emit(self, element: Element) -> None:
        """Write any element on the stream, if it is still connected; a peer that does not read gets closed."""
        if not self._writable():
            return
        try:
            self.writer.write(to_bytes(element, self.content_ns))
        except (ConnectionError, RuntimeError):
            self.closed = True
            return
        if self.service.tap is not None:
            self.service.tap(self, "out", element)
        transport = self.writer.transport
        if transport is not None and transport.get_write_buffer_size() > self.service.config.max_write_buffer:
            self.log("the peer does not read; closing")
            self.close("policy-violation", "output buffer limit reached")

    def close(self, condition: str | None = None, text: str | None = None, extra: Element | None = None) -> None:
        """End the stream (with a stream error when `condition` is given) and the connection."""
        if self.closed:
            return
        self.closing = True
        try:
            if condition:
                self.log(f"closing with stream error {condition}: {text or ''}")
                self._before_stream_error()
                self.writer.write(to_bytes(stream_error(condition, text, extra), self.content_ns))
            self.writer.write(STREAM_CLOSE)
        except (ConnectionError, RuntimeError):
            pass
        self.closed = True
        try:
            self.writer.close()
        except (ConnectionError, RuntimeError):
            pass

    # -- the read loop --------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.log(f"connection from {self.peer}")
        try:
            while not self.closed:
                timeout = self._idle_timeout()
                try:
                    data = await asyncio.wait_for(self.reader.read(READ_CHUNK), timeout)
                except asyncio.TimeoutError:
                    self.close("connection-timeout", f"idle for {timeout:g}s")
                    break
                if not data:
                    break
                try:
                    events = self.parser.feed(data)
                except XmlError as exc:
                    self.close(exc.condition, exc.text)
                    break
                if self.service.tap is not None:  # all units of this read first: pipelining shows
                    for event in events:
                        if isinstance(event, UnitReceived):
                            self.service.tap(self, "in", event.element)
                for event in events:
                    try:
                        if isinstance(event, StreamOpened):
                            self._on_stream_open(event)
                        elif isinstance(event, UnitReceived):
                            await self._on_unit(event.element)
                        elif isinstance(event, StreamClosed):
                            self.close()
                    except Exception:  # a bug here must show as a stream error, never as silence
                        self.log("internal error:\n" + traceback.format_exc())
                        self.close("internal-server-error", "the reference service failed on this unit")
                    if self.closed or self._restart:
                        break
                if self._restart:
                    self._restart = False
                    self._on_restart()
                    self.parser = self._new_parser()
                await self._drain()
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            self.log(f"connection error: {exc}")
        finally:
            self.closed = True
            try:
                self.writer.close()
            except (ConnectionError, RuntimeError):
                pass
            self._ended()

    async def _upgrade_to_tls(self, context: ssl.SSLContext, proceed: Element, *,
                              keep_open_on_failure: bool = False) -> ssl.SSLObject | None:
        """Answer STARTTLS with `proceed` and run the TLS handshake (RFC 6120 §5.4.2.3); the TLS object, or None when
        the handshake failed (the connection is then over, unless `keep_open_on_failure`: the flaw
        'tls-errors-ignored', which swallows the failure and leaves the connection open and silent)."""
        # Stop reading before <proceed/> goes out: the ClientHello must reach the TLS layer, not the plaintext
        # reader's buffer (start_tls resumes reading once TLS is in place).
        self.writer.transport.pause_reading()
        self.emit(proceed)
        await self._drain()
        try:
            if keep_open_on_failure:
                with HandshakeFailureKeptOpen(self.writer.transport):
                    await asyncio.wait_for(self.writer.start_tls(context), TLS_HANDSHAKE_SECONDS)
            else:
                await asyncio.wait_for(self.writer.start_tls(context), TLS_HANDSHAKE_SECONDS)
        except (asyncio.TimeoutError, ssl.SSLError, ConnectionError, OSError) as exc:
            self.log(f"TLS handshake failed: {exc}")
            if not keep_open_on_failure:
                self.closed = True
            return None
        self.tls = True
        self._restart = True
        return self.writer.get_extra_info("ssl_object")

    def _on_restart(self) -> None:
        """A new stream starts on the connection (subclasses forget per-stream state here)."""

    async def _drain(self) -> None:
        try:
            await asyncio.wait_for(self.writer.drain(), DRAIN_SECONDS)
        except asyncio.TimeoutError:
            self.close()
        except (ConnectionError, RuntimeError, ssl.SSLError):
            self.closed = True  # the connection is gone (or its TLS failed): not a close of the stream
