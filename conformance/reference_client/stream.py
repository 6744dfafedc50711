"""The XML stream on the client's connection (RFC 6120 §4), through the project's sans-IO codec: open (or restart)
a stream, send elements, take the server's top-level elements one at a time."""

from __future__ import annotations

import collections

from conformance.adapters.xmpp.codec.stanza import CLIENT, STREAM_CLOSE, error_condition, is_stream_error, stream_header
from conformance.adapters.xmpp.codec.xml import (STREAM_NS, Element, StreamClosed, StreamOpened, StreamParser,
                                                 UnitReceived, XmlError, to_bytes)

from .connection import Connection

FEATURES = f"{{{STREAM_NS}}}features"


class StreamEnded(Exception):
    """The server ended the stream: </stream:stream>, a stream error (`condition`), or XML we refuse."""

    def __init__(self, reason: str, condition: str | None = None):
        super().__init__(reason)
        self.condition = condition


class XmppStream:
    def __init__(self, conn: Connection, domain: str):
        self.conn = conn
        self.domain = domain
        self._parser = StreamParser()
        self._units: collections.deque[Element] = collections.deque()
        self.closed_by_server = False
        self.closed_by_client = False

    async def open(self, from_: str | None = None) -> None:
        """Send a stream header (a new parser: every restart is a new document) to the service's domain."""
        self._parser = StreamParser()
        self._units.clear()
        await self.conn.send(stream_header(to=self.domain, from_=from_))

    async def send(self, *elements: Element) -> None:
        """Elements in one write (one TLS record)."""
        await self.conn.send(b"".join(to_bytes(e, CLIENT) for e in elements))

    async def next_unit(self) -> Element:
        """The server's next top-level element. StreamEnded at its end or on a stream error; ConnectionLost and
        TlsFailure come from the connection."""
        while not self._units:
            data = await self.conn.recv()
            try:
                events = self._parser.feed(data)
            except XmlError as exc:
                raise StreamEnded(f"the server sent XML the client refuses ({exc})", exc.condition) from None
            for event in events:
                if isinstance(event, UnitReceived):
                    self._units.append(event.element)
                elif isinstance(event, StreamClosed):
                    self._units.append(None)  # after what came before it
                elif isinstance(event, StreamOpened) and event.tag != f"{{{STREAM_NS}}}stream":
                    raise StreamEnded(f"the server opened <{event.tag}> instead of a stream")
        unit = self._units.popleft()
        if unit is None:
            self.closed_by_server = True
            raise StreamEnded("the server closed the stream")
        if is_stream_error(unit):
            self.closed_by_server = True
            condition = error_condition(unit)
            raise StreamEnded(f"the server ended the stream with <{condition}/>", condition)
        return unit

    async def close(self) -> None:
        """Our closing tag (RFC 6120 §4.4), once."""
        if not self.closed_by_client:
            self.closed_by_client = True
            await self.conn.send(STREAM_CLOSE)


def is_features(unit: Element) -> bool:
    return unit.tag == FEATURES
