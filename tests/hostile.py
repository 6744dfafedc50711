"""Misbehaving targets on loopback, for checking that the harness turns any answer into a verdict with evidence."""

from __future__ import annotations

import socket
import socketserver
import threading


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class _LoopbackServer:
    """A threaded TCP server on 127.0.0.1 (any free port) whose connections go to `handle(conn)`; a context manager."""

    def __init__(self):
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                outer.handle(self.request)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class HostileTarget(_LoopbackServer):
    """mode: 'garbage' (random bytes at once), 'close' (accept, then close), 'silent' (accept, never answer),
    'not-xml' (answers the stream header with a non-XML line)."""

    def __init__(self, mode: str):
        self.mode = mode
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            if self.mode == "garbage":
                conn.sendall(bytes(range(256)) * 4)
            elif self.mode == "not-xml":
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            elif self.mode == "silent":
                while conn.recv(4096):
                    pass
        except OSError:
            pass
        finally:
            conn.close()


class CutAfter(_LoopbackServer):
    """Forwards the first `keep` connections to a real target, then cuts every later one right after accepting it:
    a target that goes away in the middle of a run."""

    def __init__(self, target: tuple[str, int], keep: int):
        self.target = target
        self.keep = keep
        self.accepted = 0
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with self.lock:
            self.accepted += 1
            cut = self.accepted > self.keep
        if cut:
            conn.close()
            return
        upstream = socket.create_connection(self.target, timeout=30)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        back = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
        back.start()
        pump(conn, upstream)
        back.join(30)
        conn.close()
        upstream.close()
