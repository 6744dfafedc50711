"""From TCP to a bound session: connect, secure the stream, authenticate, bind (RFC 6120 §§5-7), with the decisions a
careful client makes on the way:

* STARTTLS is asked for whether or not the features offer it (RFC 7590 §3.1: a client MUST NOT be deterred by a
  missing offer, which an attacker can strip); anything but <proceed/> ends the attempt;
* the server's certificate must chain to the request's CA and name the service's domain (tls.py);
* authentication only inside TLS, by the strongest SCRAM offered, and only once the server proved itself (auth.py);
* nothing but the bind request before the bind result: no presence, no message outside an established session;
* no second attempt: a client that retries after TLS failed can only be pushed into something weaker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys

from conformance.adapters.xmpp.codec.jid import JID, JidError
from conformance.adapters.xmpp.codec.stanza import (BIND, CLIENT, SASL, SESSION, TLS, error_condition, iq, kind, new_id,
                                                    q, stream_header)
from conformance.adapters.xmpp.codec.xml import E, Element, split, to_bytes

from . import zero_rtt
from .auth import AuthFailed, authenticate, choose_mechanism, offered_mechanisms
from .connection import Connection, ConnectionLost
from .events import Reporter
from .flaws import Flawed
from .request import Request
from .stream import StreamEnded, XmppStream, is_features
from .tls import ServerHelloCheck, TlsFailure, client_context

STEP = 10.0  # seconds: the TCP connect, each answer during negotiation
HANDSHAKE = 1.5  # seconds for the TLS handshake: a server silent that long after the ClientHello is taken for gone

# Fatal alerts with which a server answers the client's own offer (no version or cipher suite in common, a downgrade
# detected): the server refusing what this client asked for, not the connection breaking. Even the plaintext-fallback
# flaw takes these for an answer, so that it stays one mistake (retrying after breakage) rather than also undoing
# the refusal of a downgraded handshake (IMPP-T1-5, the legacy-tls flaw's).
NEGOTIATION_ALERTS = frozenset({"protocol_version", "handshake_failure", "insufficient_security",
                                "inappropriate_fallback"})


class GaveUp(Exception):
    """The client ends the attempt (reason: what went wrong, in the library's words). `by_server`: the server closed
    the stream or the connection first."""

    def __init__(self, reason: str, *, by_server: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.by_server = by_server


class _TlsBroke(GaveUp):
    """TLS did not come up for a reason the network can cause: refused (<failure/>), reset, or an alert."""


@dataclasses.dataclass
class Established:
    conn: Connection
    stream: XmppStream
    jid: JID  # the full JID the service bound
    presence_sent: bool  # the initial presence already went out (flaw 'client-pipelines-presence')


def _tls_broke(failure: TlsFailure) -> bool:
    """Whether flaw 'client-plaintext-fallback' takes this failure for "TLS does not work here": the connection
    reset or closed mid-handshake, or a fatal alert that is not the server's answer to the client's own offer. A
    certificate the client itself rejected is a refusal it reached by checking, never a reason to retry."""
    if failure.kind == "broken":
        return True
    return failure.kind == "alert" and failure.alert not in NEGOTIATION_ALERTS


async def log_in(request: Request, report: Reporter, flawed: Flawed, initial_presence: Element) -> Established:
    """A bound session, or GaveUp (the connection closed behind it)."""
    try:
        return await _attempt(request, report, flawed, initial_presence, in_clear=False)
    except _TlsBroke as broke:
        if not flawed("client-plaintext-fallback"):
            raise GaveUp(broke.reason, by_server=broke.by_server) from None
        # "Some networks break TLS; better connected than not": the same service again, without TLS at all. Not a
        # failure the application hears of: the library is still trying.
        print(f"{broke.reason}; reconnecting without TLS", file=sys.stderr, flush=True)
        return await _attempt(request, report, flawed, initial_presence, in_clear=True)


async def _attempt(request: Request, report: Reporter, flawed: Flawed, initial_presence: Element, *,
                   in_clear: bool) -> Established:
    try:
        conn = await Connection.open(request.host, request.port, STEP)
    except ConnectionLost as exc:
        raise GaveUp(str(exc)) from None
    report("connected", host=request.host, port=request.port)
    stream = XmppStream(conn, request.domain)
    try:
        return await _negotiate(conn, stream, request, report, flawed, initial_presence, in_clear=in_clear)
    except TlsFailure as exc:
        await conn.abort(alert=True)  # the handshake's own alert (unknown_ca, bad_certificate...) has gone already
        if _tls_broke(exc):
            raise _TlsBroke(f"TLS failed: {exc.reason}") from None
        raise GaveUp(f"TLS failed: {exc.reason}") from None
    except _TlsBroke:
        await _close(stream)
        raise
    except (StreamEnded, ConnectionLost) as exc:
        await _close(stream)
        raise GaveUp(str(exc), by_server=True) from None
    except AuthFailed as exc:
        await _close(stream)
        raise GaveUp(str(exc)) from None
    except GaveUp:
        await _close(stream)
        raise
    except asyncio.TimeoutError:
        await _close(stream)
        raise GaveUp(f"the server did not answer within {STEP:g}s") from None


async def _close(stream: XmppStream) -> None:
    try:
        await asyncio.wait_for(stream.close(), 2.0)
    except (ConnectionLost, TlsFailure, asyncio.TimeoutError):
        pass
    await stream.conn.close()


async def _features(stream: XmppStream, from_: str | None = None) -> Element:
    await stream.open(from_)
    unit = await asyncio.wait_for(stream.next_unit(), STEP)
    if not is_features(unit):
        raise GaveUp(f"the server sent <{split(unit.tag)[1]}/> instead of its stream features")
    return unit


async def _negotiate(conn: Connection, stream: XmppStream, request: Request, report: Reporter, flawed: Flawed,
                     initial_presence: Element, *, in_clear: bool) -> Established:
    own = str(request.jid)
    context = client_context(request.ca_file, flawed)
    clear_by_choice = in_clear  # the client decided to go on without TLS (only ever a flaw's decision)
    if in_clear:
        features = await _features(stream)
    elif request.tls == "direct":  # XEP-0368: TLS from the first byte
        await _secure(conn, context, request, report, flawed, initial_presence)
        features = await _features(stream, own)
    else:
        features = await _features(stream)
        starttls = features.find(q(TLS, "starttls"))
        if starttls is None and flawed("client-starttls-optional"):
            clear_by_choice = True  # "the server does not do TLS, so be it"
        elif starttls is not None and starttls.find(q(TLS, "required")) is None and \
                flawed("client-starttls-only-when-required"):
            clear_by_choice = True  # "the server says TLS is optional here, so it must be fine"
        else:
            await stream.send(E("starttls", ns=TLS))  # offered or not: RFC 7590 §3.1
            answer = await asyncio.wait_for(stream.next_unit(), STEP)
            if answer.tag == q(TLS, "failure"):
                raise _TlsBroke("the server refused STARTTLS (<failure/>)")
            if answer.tag != q(TLS, "proceed"):
                raise GaveUp(f"the server answered <starttls/> with <{split(answer.tag)[1]}/>")
            await _secure(conn, context, request, report, flawed, initial_presence)
            features = await _features(stream, own)

    offered = offered_mechanisms(features)
    if clear_by_choice and not offered:
        offered = ["PLAIN"]  # "an old server that does not list its mechanisms: they all do PLAIN"
    mechanism = choose_mechanism(offered, plain_allowed=conn.encrypted or clear_by_choice, flawed=flawed)
    if mechanism is None:
        where = "inside TLS" if conn.encrypted else "without TLS"
        raise GaveUp(f"no SASL mechanism this client uses {where} among: {', '.join(offered) or 'none offered'}")
    await authenticate(stream, mechanism, request.username, request.password, timeout=STEP, flawed=flawed)
    report("authenticated", mechanism=mechanism)

    features = await _features(stream, own if conn.encrypted else None)
    return await _bind(conn, stream, features, request, report, flawed, initial_presence)


async def _secure(conn: Connection, context, request: Request, report: Reporter, flawed: Flawed,
                  initial_presence: Element) -> None:
    session = None
    if flawed("client-early-data"):
        # "Reconnect in zero round trips": the stream header and initial presence go as 0-RTT data when it can.
        early = stream_header(to=request.domain, from_=str(request.jid)) + to_bytes(initial_presence, CLIENT)
        session = zero_rtt.EarlyDataTlsSession(request.ca_file, request.domain,
                                               zero_rtt.ticket_file(request.host, request.port, str(request.jid)),
                                               early)
    await conn.start_tls(context, request.domain, HANDSHAKE, ServerHelloCheck(flawed), session)
    report("secured", version=conn.tls.version, cipher=conn.tls.cipher)


async def _bind(conn: Connection, stream: XmppStream, features: Element, request: Request, report: Reporter,
                flawed: Flawed, initial_presence: Element) -> Established:
    if features.find(q(BIND, "bind")) is None:
        raise GaveUp("the server offers no resource binding")
    bind = iq("set", E("bind", None, E("resource", text=request.resource, ns=BIND) if request.resource else None,
                       ns=BIND), id_=new_id("bind"))
    presence_sent = False
    if flawed("client-pipelines-presence"):
        # "Save a round trip": the presence goes out with the bind request, before there is a session to send it in.
        await stream.send(bind, initial_presence)
        report("sent", kind="presence", status=initial_presence.findtext("{jabber:client}status"))
        presence_sent = True
    else:
        await stream.send(bind)
    answer = await _answer_to(stream, bind.get("id"))
    if answer.get("type") != "result":
        raise GaveUp(f"the server refused resource binding: <{error_condition(answer) or 'no reason'}/>")
    try:
        jid = JID.parse(answer.findtext(f"{q(BIND, 'bind')}/{q(BIND, 'jid')}") or "")
    except JidError as exc:
        raise GaveUp(f"the bind result carries no usable JID: {exc}") from None
    if jid.bare != request.jid or jid.resource is None:
        raise GaveUp(f"the server bound {jid}, not a resource of {request.jid}")
    report("bound", jid=str(jid))
    session = features.find(q(SESSION, "session"))
    if session is not None and session.find(q(SESSION, "optional")) is None:  # RFC 3921's session, where required
        request_session = iq("set", E("session", ns=SESSION), id_=new_id("sess"))
        await stream.send(request_session)
        answer = await _answer_to(stream, request_session.get("id"))
        if answer.get("type") != "result":
            raise GaveUp(f"the server refused session establishment: <{error_condition(answer) or 'no reason'}/>")
    return Established(conn, stream, jid, presence_sent)


async def _answer_to(stream: XmppStream, ident: str) -> Element:
    """The iq answering `ident`; nothing else is expected before it (what is not an answer is left unread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP
    while True:
        unit = await asyncio.wait_for(stream.next_unit(), max(deadline - loop.time(), 0.01))
        if kind(unit) == "iq" and unit.get("id") == ident and unit.get("type") in ("result", "error"):
            return unit
        if split(unit.tag)[0] == SASL:
            raise GaveUp(f"unexpected <{split(unit.tag)[1]}/> after authentication")
