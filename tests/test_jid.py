"""JID parsing and normalisation (RFC 7622): the identity comparisons of blocklists and rosters depend on it."""

import pytest

from conformance.adapters.xmpp.codec.jid import JID, JidError


@pytest.mark.parametrize("text, canonical", [
    ("alice@iut.test", "alice@iut.test"),
    ("Alice@IUT.Test", "alice@iut.test"),
    ("ｍａｌｌｏｒｙ@iut.test", "mallory@iut.test"),
    ("alice@iut.test/Phone", "alice@iut.test/Phone"),
    ("iut.test", "iut.test"),
    ("iut.test/res", "iut.test/res"),
])
def test_equivalent_forms_normalise_to_one_jid(text, canonical):
    assert str(JID.parse(text)) == canonical


@pytest.mark.parametrize("text", ["", "@iut.test", "alice@", "alice@iut.test/", "a b@iut.test"])
def test_malformed_jids_are_refused(text):
    with pytest.raises(JidError):
        JID.parse(text)


def test_bare_drops_only_the_resource():
    jid = JID.parse("alice@iut.test/phone")
    assert str(jid.bare) == "alice@iut.test" and jid.resource == "phone" and jid.bare.is_bare
