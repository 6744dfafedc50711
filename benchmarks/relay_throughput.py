"""Throughput of the on-path relay on loopback, against a plain relay (socat) in the same run.

    python benchmarks/relay_throughput.py [MiB]

A sink accepts a connection, sends <proceed/> (so the relay switches to TLS-record framing, its heavier path), then
reads and discards until end of stream and answers with the byte count. A source sends MiB of 16 KiB TLS
application-data records through: directly, through socat, and through the relay (record framing on, no knob set).
Loopback only; every run is bounded. Prints MiB/s for each and the relay's ratio to socat.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance.adapters.xmpp.on_path import XmppStreamHooks  # noqa: E402
from conformance.attacker.relay import Relay  # noqa: E402
from conformance.transport.wire import Recorder  # noqa: E402

PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
RECORD = bytes([23, 3, 3, 0x40, 0x00]) + b"\xab" * 0x4000


def sink() -> int:
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            conn, _ = server.accept()
            with conn:
                conn.sendall(PROCEED)
                total = 0
                while data := conn.recv(1 << 20):
                    total += len(data)
                conn.sendall(str(total).encode())
    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def push(port: int, mib: int) -> float:
    records = mib * 64  # 16 KiB each
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        assert conn.recv(len(PROCEED)) == PROCEED
        started = time.perf_counter()
        block = RECORD * 64
        for _ in range(records // 64):
            conn.sendall(block)
        conn.shutdown(socket.SHUT_WR)
        answer = conn.recv(64)
        elapsed = time.perf_counter() - started
    assert int(answer) == records * len(RECORD), answer
    return records * len(RECORD) / (1 << 20) / elapsed


def relay_port(target: int) -> int:
    ready = threading.Event()
    holder = {}

    def run():
        async def main():
            relay = Relay(("127.0.0.1", target), Recorder(max_bytes=0), XmppStreamHooks(), lifetime=120,
                          cap=1 << 40)
            holder["port"] = (await relay.start())[1]
            ready.set()
            await asyncio.sleep(120)
        asyncio.run(main())
    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    return holder["port"]


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    target = sink()
    results = {"direct": push(target, mib)}
    socat = shutil.which("socat")
    if socat:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        proc = subprocess.Popen([socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"TCP:127.0.0.1:{target}"])
        try:
            for _ in range(100):  # until socat listens (at most 5 s)
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                        conn.recv(len(PROCEED))
                    break
                except OSError:
                    time.sleep(0.05)
            results["socat"] = push(port, mib)
        finally:
            proc.kill()
            proc.wait(5)
    results["relay"] = push(relay_port(target), mib)
    for name, rate in results.items():
        print(f"{name:>7}: {rate:8.1f} MiB/s")
    if "socat" in results:
        print(f"relay/socat: {results['relay'] / results['socat']:.2f}")


if __name__ == "__main__":
    main()
