"""§5.7 Integrity of presence information, client side: after TLS fails the client never goes on in plaintext."""

import pytest

from conformance.marks import case
from conformance.verdicts import positive_control

# <failure/> to <starttls/>; TCP RST after the ClientHello; a fatal alert; no ServerHello ever
TLS_FAILURES = ("refused", "reset", "alert", "silent")


@case("IMPP-5.7-2")
@pytest.mark.parametrize("failure", TLS_FAILURES)
def test_client_does_not_fall_back_to_plaintext_when_tls_fails(client, contact, impostor, failure):
    control = client.logs_in(via=impostor)
    with positive_control():
        assert control.bound, f"the client does not log in through the relay when nothing interferes: {control}"
    impostor.makes_tls_fail(failure)
    body = client.canary("msg")
    running = client.starts("send-message", via=impostor, to=contact.bare, body=body)
    running.ended_by_itself_within(client.timeouts.fallback)  # gives up, or keeps trying: both are watched
    run = running.ends()
    leaked = impostor.client_cleartext_findings(secrets=(client.password, body))
    assert not leaked, f"after TLS failed ({failure}) the client sent in clear: {leaked[0]}"
    assert not run.bound, f"the client bound a session although TLS never came up: {run}"
