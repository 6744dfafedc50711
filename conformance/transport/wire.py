"""What crossed the wire: every chunk a harness connection sent or received, on both layers.

The `tcp` layer is the bytes on the socket (ciphertext once TLS is up); the `app` layer is the plaintext the
protocol saw. Transcripts are made from the app layer, pcaps from the tcp layer, and canary searches look at both.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Literal

Direction = Literal["out", "in"]
Layer = Literal["tcp", "app", "event"]


@dataclasses.dataclass(frozen=True)
class Chunk:
    t: float  # seconds since the recorder started
    connection: str  # label of the connection, e.g. "alice#1"
    direction: Direction
    layer: Layer
    data: bytes
    note: str = ""


@dataclasses.dataclass
class Endpoint:
    label: str
    role: str
    local: tuple[str, int] | None = None
    remote: tuple[str, int] | None = None
    tls: str | None = None  # negotiated TLS version, once known


class Recorder:
    """Collects chunks from every connection opened for one test case. Thread-safe; bounded."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024):
        self.started = time.monotonic()
        self.wall_started = time.time()
        self.chunks: list[Chunk] = []
        self.endpoints: dict[str, Endpoint] = {}
        self._counts: dict[str, int] = {}
        self._bytes = 0
        self._max_bytes = max_bytes
        self.truncated = False
        self._lock = threading.Lock()

    def endpoint(self, role: str) -> Endpoint:
        with self._lock:
            n = self._counts.get(role, 0) + 1
            self._counts[role] = n
            label = role if n == 1 else f"{role}#{n}"
            endpoint = Endpoint(label=label, role=role)
            self.endpoints[label] = endpoint
            return endpoint

    def add(self, connection: str, direction: Direction, layer: Layer, data: bytes, note: str = "") -> None:
        with self._lock:
            if self._bytes + len(data) > self._max_bytes:
                if not self.truncated:  # say where the recording stops (an event costs no bytes)
                    self.chunks.append(Chunk(time.monotonic() - self.started, connection, "in", "event", b"",
                                             f"recording stops here: the case's byte limit "
                                             f"({self._max_bytes} bytes) is reached"))
                self.truncated = True
                return
            self._bytes += len(data)
            self.chunks.append(Chunk(time.monotonic() - self.started, connection, direction, layer, data, note))

    def event(self, connection: str, note: str) -> None:
        self.add(connection, "in", "event", b"", note)

    def app_bytes(self, direction: Direction | None = None) -> bytes:
        return b"".join(c.data for c in self.chunks if c.layer == "app" and (direction is None or c.direction == direction))
