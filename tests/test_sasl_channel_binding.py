"""SCRAM channel binding: the harness client's -PLUS and 'y' messages, and the reference service's checks of them
(with each of its channel-binding flaws), on loopback."""

from __future__ import annotations

import asyncio
import base64
import ssl

import pytest
import scramp

from conformance.adapters.xmpp.client import XmppClient
from conformance.adapters.xmpp.codec import sasl
from conformance.adapters.xmpp.codec.xml import Limits
from conformance.reference.config import ServiceConfig
from conformance.reference.service import Service
from conformance.transport.connection import Connection
from conformance.transport.wire import Recorder

BINDING = ("tls-unique", b"\x01finished-message\xff")


def _attrs(message: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.split(",") if "=" in part)


def _exchange(client: scramp.ScramClient, server: scramp.ScramServer) -> tuple[str, str]:
    first = client.get_client_first()
    server.set_client_first(first)
    client.set_server_first(server.get_server_first())
    final = client.get_client_final()
    server.set_client_final(final)
    client.set_server_final(server.get_server_final())
    return first, final


def _auth_fn(password: str, mechanism: str):
    info = scramp.ScramMechanism(mechanism).make_auth_info(password)
    return lambda _name: info


def test_plus_messages_carry_the_binding_type_and_data():
    client = sasl.scram_client("SCRAM-SHA-256-PLUS", "alice", "secret", channel_binding=BINDING)
    server = scramp.ScramMechanism("SCRAM-SHA-256-PLUS").make_server(_auth_fn("secret", "SCRAM-SHA-256-PLUS"),
                                                                     channel_binding=BINDING)
    first, final = _exchange(client, server)
    assert first.startswith("p=tls-unique,,n=alice,r=")
    assert base64.b64decode(_attrs(final)["c"]) == b"p=tls-unique,," + BINDING[1]


def test_the_y_flag_says_the_client_saw_no_channel_binding():
    client = sasl.scram_client("SCRAM-SHA-256", "alice", "secret", claim_no_channel_binding=True)
    server = scramp.ScramMechanism("SCRAM-SHA-256").make_server(_auth_fn("secret", "SCRAM-SHA-256"))
    first, final = _exchange(client, server)  # a server without channel binding accepts it
    assert first.startswith("y,,n=alice,")
    assert base64.b64decode(_attrs(final)["c"]) == b"y,,"


def test_plus_needs_binding_data_and_the_default_stays_n():
    with pytest.raises(ValueError):
        sasl.scram_client("SCRAM-SHA-1-PLUS", "alice", "secret")
    assert sasl.scram_client("SCRAM-SHA-1", "alice", "secret").get_client_first().startswith("n,,")


def test_tls_unique_is_only_taken_from_tls_1_2():
    class Fake:
        def __init__(self, version):
            self._version = version

        def version(self):
            return self._version

        def get_channel_binding(self, kind):
            return b"finished"

    assert sasl.tls_unique(Fake("TLSv1.2")) == ("tls-unique", b"finished")
    assert sasl.tls_unique(Fake("TLSv1.3")) is None
    assert sasl.tls_unique(None) is None


# -- against the reference service -------------------------------------------------------------------------------------

async def _login(tmp_path, flaws: tuple[str, ...], tls: ssl.TLSVersion, **auth) -> tuple[dict, object]:
    """Start a reference service, log alice in once with `auth` (authenticate's options); return what the service
    offered before SASL (mechanisms, XEP-0440 types, the client's first message) and the SASL result."""
    service = Service(ServiceConfig(data_dir=tmp_path / "ref", flaws=frozenset(flaws)))
    port = await service.start()
    try:
        conn = await Connection.open("127.0.0.1", port, role="alice", recorder=Recorder(), timeout=5)
        client = XmppClient(conn, "iut.test", limits=Limits(), timeout=5)
        context = ssl.create_default_context(cafile=str(service.certs.ca))
        context.maximum_version = tls
        try:
            await client.open_stream()
            await client.starttls(context)
            offer = {"mechanisms": client.mechanisms(), "types": client.channel_binding_types()}
            if auth.pop("own_binding", False):
                auth["channel_binding"] = client.own_channel_binding()
            result = await client.authenticate("alice", service.passwords["alice"], **auth)
            offer["client_first"] = client.sasl_sent[0]
        finally:
            await client.close()
        return offer, result
    finally:
        await service.stop()


def _text(result) -> str | None:
    return result.element.findtext("{urn:ietf:params:xml:ns:xmpp-sasl}text")


def test_the_reference_offers_plus_and_xep_0440_on_tls_1_2_only(tmp_path):
    offer, result = asyncio.run(_login(tmp_path, (), ssl.TLSVersion.TLSv1_2, own_binding=True))
    assert {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"} <= set(offer["mechanisms"])
    assert offer["types"] == ["tls-unique"]
    assert result.success and result.mechanism == "SCRAM-SHA-256-PLUS"
    assert offer["client_first"].startswith("p=tls-unique,,")

    offer, result = asyncio.run(_login(tmp_path, (), ssl.TLSVersion.TLSv1_3, claim_no_channel_binding=True))
    assert not any(m.endswith("-PLUS") for m in offer["mechanisms"]) and offer["types"] is None
    assert result.success  # no channel binding on offer: the client's 'y' is right


@pytest.mark.parametrize("flaw", [None, "channel-binding-ignored"])
def test_binding_data_of_another_channel_is_refused_unless_the_flaw_ignores_it(tmp_path, flaw):
    """What a MITM that terminates TLS causes: the client binds to the MITM's session, not to the service's."""
    _, result = asyncio.run(_login(tmp_path, (flaw,) if flaw else (), ssl.TLSVersion.TLSv1_2,
                                   mechanism="SCRAM-SHA-256-PLUS", channel_binding=BINDING))
    if flaw:
        assert result.success
    else:
        assert result.condition == "not-authorized" and _text(result) == "e=channel-bindings-dont-match"


@pytest.mark.parametrize("flaw", [None, "channel-binding-downgrade-accepted"])
def test_the_y_flag_is_refused_where_plus_is_offered_unless_the_flaw_accepts_it(tmp_path, flaw):
    _, result = asyncio.run(_login(tmp_path, (flaw,) if flaw else (), ssl.TLSVersion.TLSv1_2,
                                   mechanism="SCRAM-SHA-1", claim_no_channel_binding=True))
    if flaw:
        assert result.success
    else:
        assert result.condition == "not-authorized" and _text(result) == "e=server-does-support-channel-binding"
