"""Run the reference service in the foreground: `python -m conformance.reference --data DIR [--port N] [--flaw F]`.

Once it listens it writes `profile.toml` into the data directory and prints `READY <path>` on stdout, so a parent
process (the harness, `impp-conformance serve`) knows where to find it. SIGTERM or SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from conformance import pki
from conformance.profile import render

from .config import ServiceConfig
from .flaws import UnknownFlaw, check
from .service import Service


def profile_text(service: Service, port: int) -> str:
    flaws = ", ".join(sorted(service.flaws)) or "none"
    remote = service.config.peers.get(pki.REMOTE_DOMAIN)
    return render(
        {"name": "reference" if not service.flaws else f"reference+{'+'.join(sorted(service.flaws))}",
         "protocol": "xmpp", "domain": service.config.domain, "host": service.config.host, "port": port,
         "ca_file": str(service.certs.ca.resolve()),
         "listeners": [f"tcp://{service.config.host}:{service.side_door_port}"]},
        {user: (user, service.passwords[user]) for user in service.config.accounts},
        comment=f"The embedded reference service (flaws: {flaws}), generated at start-up.",
        federation={"port": service.s2s_port, "remote_domain": pki.REMOTE_DOMAIN,
                    "certificates": str(service.certs.peers.resolve()),
                    # where the service looks for remote.test's server (--peer): the harness listens there
                    "listen_port": remote[1] if remote else None},
        # The service answers within milliseconds on loopback: watching 2 s for what must not arrive is ample
        # (its flaw 's2s-out-before-authentication' sends after 0.3 s), and keeps the suite fast.
        timeouts={"negative": 2.0},
        # Floods from a second loopback address (the parties use 127.0.0.1), short, and above the service's limits
        # (connections: 256 in all, 16 unauthenticated per address; fetches: 20/s); the service serves a
        # legitimate party within milliseconds when nothing is wrong, so 1 s is a generous bound on its delays.
        load={"source": "127.0.0.2", "duration": 1.0, "rate": 200, "connections": 300, "subscriptions": 150,
              "latency": 1.0})


async def serve(config: ServiceConfig, announce, *, exit_with_parent: bool = False, make=Service) -> None:
    """Run the service (`make(config)`: the project's tests pass a misbehaving subclass) until SIGTERM or SIGINT,
    or until the parent goes away with `exit_with_parent`."""
    service = make(config)
    port = await service.start()
    profile_path = config.data_dir / "profile.toml"
    profile_path.write_text(profile_text(service, port), encoding="utf-8")
    announce(service, port, profile_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if exit_with_parent:
        # The harness holds our stdin open; end of file means it is gone (even if it was killed), so stop too
        # rather than linger as an orphan listening on loopback.
        def parent_gone() -> None:
            if not os.read(sys.stdin.fileno(), 1024):
                loop.remove_reader(sys.stdin.fileno())
                stop.set()
        loop.add_reader(sys.stdin.fileno(), parent_gone)
    await stop.wait()
    await service.stop()


def _peer(text: str) -> tuple[str, tuple[str, int]]:
    """DOMAIN=HOST:PORT (an IPv6 host in brackets) -> (domain, (host, port))."""
    domain, sep, address = text.partition("=")
    host, _, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    domain = domain.strip().lower().rstrip(".")
    if not sep or not domain or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not DOMAIN=HOST:PORT")
    return domain, (host, int(port))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.reference", description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="data directory (state, certificates, log)")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--side-door-port", type=int, default=0,
                        help="TCP port of the second (direct TLS) client listener (0: any free port)")
    parser.add_argument("--s2s-port", type=int, default=0,
                        help="TCP port of the inbound server-to-server listener (0: any free port)")
    parser.add_argument("--peer", action="append", default=[], type=_peer, metavar="DOMAIN=HOST:PORT",
                        help="where another domain's server listens, for outbound server-to-server (repeatable); "
                             "other domains are unreachable (no DNS lookups)")
    parser.add_argument("--no-dialback", action="store_true",
                        help="accept certificates only as proof of another domain, no server dialback (XEP-0220)")
    parser.add_argument("--domain", default="iut.test")
    parser.add_argument("--flaw", action="append", default=[], help="switch on a flaw (repeatable)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when standard input reaches end of file (the launching process went away)")
    args = parser.parse_args(argv)
    try:
        flaws = check(args.flaw)
    except UnknownFlaw as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def announce(service, port, profile_path):
        print(f"READY {profile_path}", flush=True)

    config = ServiceConfig(data_dir=args.data, port=args.port, side_door_port=args.side_door_port,
                           s2s_port=args.s2s_port, domain=args.domain, flaws=flaws, peers=dict(args.peer),
                           s2s_dialback=not args.no_dialback)
    try:
        asyncio.run(serve(config, announce, exit_with_parent=args.exit_with_parent))
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
