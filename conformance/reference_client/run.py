"""One run of the reference client as the shim contract has it: log in, carry out the action, report what arrives
until standard input ends (or `linger` runs out), disconnect; the exit status says how it ended (contract.py)."""

from __future__ import annotations

import asyncio
import contextlib

from conformance.adapters.xmpp.codec.stanza import presence

from conformance.shim.contract import EXIT_DONE, EXIT_REFUSED

from .connection import ConnectionLost
from .events import Reporter
from .flaws import Flawed
from .login import GaveUp, log_in
from .request import Request
from .session import Session
from .stream import StreamEnded
from .tls import TlsFailure

CLOSE_WAIT = 1.0  # seconds for the server's </stream:stream> after ours (RFC 6120 §4.4)


async def run(action: str, request: Request, report: Reporter, flawed: Flawed, stdin_ended: asyncio.Event) -> int:
    initial_presence = presence(status=request.status if action == "set-presence" else None)
    try:
        established = await log_in(request, report, flawed, initial_presence)
    except GaveUp as exc:
        report("failed", reason=exc.reason)
        report("closed", by="server" if exc.by_server else "client")
        return EXIT_REFUSED
    session = Session(established, request, report, flawed)
    watch = asyncio.ensure_future(stdin_ended.wait())
    try:
        return await _after_login(session, action, initial_presence, request.linger, watch)
    finally:
        watch.cancel()


async def _after_login(session: Session, action: str, initial_presence, linger: float, watch: asyncio.Future) -> int:
    # The action is carried out even when standard input ended during the login: the harness asked for it.
    try:
        await session.start(action, initial_presence)
    except TlsFailure as exc:
        return await _tls_failed(session, exc)
    except (StreamEnded, ConnectionLost) as exc:
        session.report("failed", reason=f"{exc} before the action was done")
        await _server_closed(session, str(exc))
        return EXIT_REFUSED
    except asyncio.TimeoutError:
        session.report("failed", reason="the server did not answer within the step's time")
        await _close(session)
        return EXIT_REFUSED

    pump = asyncio.ensure_future(session.pump())
    try:
        done, _ = await asyncio.wait({pump, watch}, timeout=linger, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
    if pump in done and not pump.cancelled():
        exc = pump.exception()
        if isinstance(exc, TlsFailure):
            return await _tls_failed(session, exc)
        if isinstance(exc, (StreamEnded, ConnectionLost)):
            await _server_closed(session, str(exc))
            return EXIT_DONE
        if exc is not None:
            raise exc
    await _close(session)  # standard input ended, or linger ran out
    return EXIT_DONE


async def _tls_failed(session: Session, exc: TlsFailure) -> int:
    """A record failed its check (tampered with, replayed): nothing on this connection can be trusted any more.
    Tell the server (TLS's alert) and close at once; no </stream:stream>, it would go in a broken session."""
    session.report("failed", reason=f"TLS failed: {exc.reason}")
    await session.conn.abort(alert=True)
    session.report("closed", by="client")
    return EXIT_REFUSED


async def _server_closed(session: Session, reason: str) -> None:
    with contextlib.suppress(ConnectionLost, TlsFailure, asyncio.TimeoutError):
        await asyncio.wait_for(session.stream.close(), CLOSE_WAIT)
    await session.conn.close()
    session.report("closed", by="server", reason=reason)


async def _close(session: Session) -> None:
    """The client's own end: </stream:stream>, a moment for the server's, TLS close_notify, TCP FIN."""
    if session.conn.failed:  # flaw 'client-tls-errors-ignored' kept a broken connection open: only the socket is left
        await session.conn.abort(alert=False)
    else:
        with contextlib.suppress(ConnectionLost, TlsFailure, asyncio.TimeoutError):
            await asyncio.wait_for(session.stream.close(), CLOSE_WAIT)
            await asyncio.wait_for(_until_server_closes(session), CLOSE_WAIT)
        await session.conn.close()
    session.report("closed", by="client")


async def _until_server_closes(session: Session) -> None:
    with contextlib.suppress(StreamEnded, ConnectionLost):
        while True:
            await session.stream.next_unit()  # what still arrives after our close is not shown
