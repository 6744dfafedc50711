"""SASL for the reference client (RFC 6120 §6): which mechanism it chooses, and the exchange itself (SCRAM through
scramp, PLAIN). A SCRAM login counts only once the server has proved it knows the password too (ServerSignature,
RFC 5802 §5): a service that cannot is an impostor, whatever certificate it showed."""

from __future__ import annotations

import asyncio
from typing import Iterable

import scramp

from conformance.adapters.xmpp.codec.sasl import b64, plain_message, unb64
from conformance.adapters.xmpp.codec.stanza import SASL, error_condition, q
from conformance.adapters.xmpp.codec.xml import E, Element, split

from .flaws import NO_FLAWS, Flawed
from .stream import XmppStream

SCRAM_PREFERENCE = ("SCRAM-SHA-256", "SCRAM-SHA-1")  # no -PLUS: this client does no channel binding (GS2 flag 'n')


class AuthFailed(Exception):
    """Authentication did not succeed, or the server did not prove itself."""


def offered_mechanisms(features: Element) -> list[str]:
    return [(m.text or "").strip().upper() for m in features.iter(q(SASL, "mechanism"))]


def choose_mechanism(offered: Iterable[str], *, plain_allowed: bool, flawed: Flawed = NO_FLAWS) -> str | None:
    """The strongest SCRAM offered; PLAIN only where no SCRAM is and only when `plain_allowed` (inside TLS): PLAIN
    puts a reusable secret on the wire (RFC 6120 §13.8.3). None: nothing this client will use."""
    offered = [m.strip().upper() for m in offered]
    if flawed("client-plain-preferred") and "PLAIN" in offered:
        return "PLAIN"  # "the simplest mechanism is the most interoperable one"
    for mechanism in SCRAM_PREFERENCE:
        if mechanism in offered:
            return mechanism
    if "PLAIN" in offered and plain_allowed:
        return "PLAIN"
    return None


async def _answer(stream: XmppStream, timeout: float) -> Element:
    unit = await asyncio.wait_for(stream.next_unit(), timeout)
    uri, local = split(unit.tag)
    if uri != SASL or local not in ("challenge", "success", "failure"):
        raise AuthFailed(f"unexpected <{local}/> during SASL")
    return unit


def _refused(answer: Element) -> AuthFailed:
    return AuthFailed(f"SASL failure: <{error_condition(answer) or 'failure'}/>")


async def authenticate(stream: XmppStream, mechanism: str, username: str, password: str, *, timeout: float,
                       flawed: Flawed = NO_FLAWS) -> None:
    """Run `mechanism` to <success/>; AuthFailed otherwise (asyncio.TimeoutError if the server falls silent)."""
    if mechanism == "PLAIN":
        await stream.send(E("auth", {"mechanism": "PLAIN"}, text=b64(plain_message(username, password)), ns=SASL))
        answer = await _answer(stream, timeout)
        if answer.tag != q(SASL, "success"):
            raise _refused(answer)
        return
    await _scram(stream, mechanism, username, password, timeout=timeout, flawed=flawed)


async def _scram(stream: XmppStream, mechanism: str, username: str, password: str, *, timeout: float,
                 flawed: Flawed) -> None:
    client = scramp.ScramClient([mechanism], username, password)
    await stream.send(E("auth", {"mechanism": mechanism}, text=b64(client.get_client_first()), ns=SASL))
    answer = await _answer(stream, timeout)
    if answer.tag != q(SASL, "challenge"):
        raise _refused(answer) if answer.tag == q(SASL, "failure") else AuthFailed("<success/> before SCRAM began")
    try:
        client.set_server_first(unb64(answer.text).decode())
        final = client.get_client_final()
    except (scramp.ScramException, ValueError, UnicodeError) as exc:
        raise AuthFailed(f"malformed SCRAM server-first-message: {exc}") from None
    await stream.send(E("response", text=b64(final), ns=SASL))
    answer = await _answer(stream, timeout)
    if answer.tag == q(SASL, "failure"):
        raise _refused(answer)
    server_final = unb64(answer.text)
    verify_now = answer.tag == q(SASL, "challenge")  # the server-final in a challenge, <success/> empty after it
    if verify_now:
        _verify(client, server_final, flawed)  # before answering: an impostor gets nothing more
        await stream.send(E("response", ns=SASL))
        answer = await _answer(stream, timeout)
        if answer.tag != q(SASL, "success"):
            raise _refused(answer) if answer.tag == q(SASL, "failure") else AuthFailed("unexpected SASL challenge")
        if answer.text and answer.text.strip() not in ("", "="):
            raise AuthFailed("a second server-final-message in <success/>")
    else:  # RFC 6120 §6.3.10: the server-final as additional data with <success/>
        _verify(client, server_final, flawed)


def _verify(client: scramp.ScramClient, server_final: bytes, flawed: Flawed) -> None:
    if flawed("client-server-signature-ignored"):
        return  # "the server said <success/>, what more proof is needed"
    if not server_final:
        raise AuthFailed("the server did not send its SCRAM ServerSignature: it did not prove it knows the password")
    try:
        client.set_server_final(server_final.decode())
    except (scramp.ScramException, ValueError, UnicodeError) as exc:
        raise AuthFailed(f"the server's SCRAM ServerSignature does not verify ({exc}): not the genuine service") \
            from None
