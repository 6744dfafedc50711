"""Role verbs for published presence information beyond <presence/>: personal eventing (XEP-0163 on XEP-0060).

A presentity publishes items (its location, say) to nodes of its own PEP service at its bare JID, and decides
who may read them (the node's access model) and who may publish (affiliations, publish model). Watchers read by
item retrieval. Mixed into XmppParty; a server without PEP answers <feature-not-implemented/> or
<service-unavailable/>, which makes the case UNSUPPORTED, never PASS.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

from conformance.roles import Outcome, Update
from conformance.verdicts import SetupFailed, Unsupported

from .codec import forms
from .codec.stanza import (GEOLOC, NODE_CONFIG, PUBSUB, PUBSUB_ERRORS, PUBSUB_OWNER, ROSTER, error_condition, iq, q)
from .codec.xml import E, Element, split
from .observe import bare_of, describe

if TYPE_CHECKING:
    from .party import XmppParty

LOCATION = GEOLOC  # the node the suite publishes to: the user's location (XEP-0080), a typical PEP node
PLANTED = "urn:impp-conformance:planted-node"  # a node someone other than the owner tries to create
SUITE_NODES = (LOCATION, PLANTED)  # deleted from every account when a cast assembles, so each test starts clean


@dataclasses.dataclass
class PubsubOutcome(Outcome):
    """The IUT's answer to a pubsub request, with the pubsub#errors condition saying why it refused (if given)."""

    reason: str | None = None  # e.g. 'not-in-roster-group', 'presence-subscription-required' (XEP-0060 §6.5.9)
    update: Update | None = None  # what the request tried to publish (its canary), for publish attempts
    node: str | None = None  # the node the request named


def item_id(update: Update) -> str:
    """The item id the harness gives the item carrying `update`'s canary (derived, so others can name it)."""
    return "impp-" + hashlib.sha256(update.canary.encode()).hexdigest()[:16]


def _pubsub(*children: Element | None, owner: bool = False) -> Element:
    return E("pubsub", None, *children, ns=PUBSUB_OWNER if owner else PUBSUB)


def _payload(canary: str) -> Element:
    return E("geoloc", None, E("text", text=canary, ns=GEOLOC), ns=GEOLOC)


def _reason(answer: Element) -> str | None:
    for element in answer.iter():
        uri, local = split(element.tag)
        if uri == PUBSUB_ERRORS:
            return local
    return None


def _config_form(fields: dict[str, list[str]]) -> Element:
    return forms.form("submit", fields, form_type=NODE_CONFIG)


class PepVerbs:
    """Verbs of XmppParty for PEP; `self` is an XmppParty."""

    # -- the presentity's own node -----------------------------------------------------------------------------------

    def publishes_pep_item(self: "XmppParty", node: str = LOCATION) -> Update:
        """Publish an item carrying a fresh canary to the own PEP node (created on first publish, XEP-0163)."""
        canary = self.rt.canary(f"{self.name}-pep")

        async def run():
            await self._ensure_online()
            update = self._update("pep item", canary)
            item = E("item", {"id": item_id(update)}, _payload(canary), ns=PUBSUB)
            answer = await self._iq(iq("set", _pubsub(E("publish", {"node": node}, item, ns=PUBSUB))))
            self._require_feature(answer, "personal eventing (XEP-0163)")
            if answer.get("type") != "result":
                raise SetupFailed(f"{self.name} could not publish to her own node {node}: <{error_condition(answer)}/>")
            return update
        return self._call(run)

    def restricts_node_to_group(self: "XmppParty", group: str, node: str = LOCATION) -> None:
        """Access model 'roster': only contacts in roster group `group` may read the node (XEP-0060 §4.5)."""
        self._call(self._configure, node, {"pubsub#access_model": ["roster"],
                                           "pubsub#roster_groups_allowed": [group]})

    def configures_node(self: "XmppParty", node: str = LOCATION, **options: str) -> None:
        """Set node configuration fields (`access_model='whitelist'` is pubsub#access_model, and so on)."""
        self._call(self._configure, node, {f"pubsub#{k}": [v] for k, v in options.items()})

    async def _configure(self: "XmppParty", node: str, fields: dict[str, list[str]]) -> None:
        configure = E("configure", {"node": node}, _config_form(fields), ns=PUBSUB_OWNER)
        answer = await self._iq(iq("set", _pubsub(configure, owner=True)))
        if answer.get("type") == "error" and error_condition(answer) == "item-not-found":
            create = [E("create", {"node": node}, ns=PUBSUB),
                      E("configure", None, _config_form(fields), ns=PUBSUB)]
            answer = await self._iq(iq("set", _pubsub(*create)))
        self._require_feature(answer, "PEP node configuration (XEP-0060 §8.2)")
        if answer.get("type") == "error" and error_condition(answer) in ("not-acceptable", "bad-request"):
            # XEP-0060 §8.2.5: a configuration the service does not support is refused as not acceptable.
            raise Unsupported(f"the IUT does not offer this node configuration ({fields}): "
                              f"<{error_condition(answer)}/>")
        if answer.get("type") != "result":
            raise SetupFailed(f"{self.name} could not configure her node {node} ({fields}): "
                              f"<{error_condition(answer)}/>")

    def puts_in_group(self: "XmppParty", other: "XmppParty", group: str) -> None:
        """File `other` under roster group `group` in the own roster (the subscription stays as it is)."""
        async def run():
            item = E("item", {"jid": other.bare}, E("group", text=group, ns=ROSTER), ns=ROSTER)
            answer = await self._iq(iq("set", E("query", None, item, ns=ROSTER)))
            if answer.get("type") != "result":
                raise SetupFailed(f"{self.name} could not put {other.name} into group {group}: "
                                  f"<{error_condition(answer)}/>")
        self._call(run)

    def node_settings(self: "XmppParty", node: str = LOCATION) -> dict[str, dict[str, list[str] | str]]:
        """The own node's configuration and affiliations, as the owner reads them."""
        async def run():
            config = await self._iq(iq("get", _pubsub(E("configure", {"node": node}, ns=PUBSUB_OWNER), owner=True)))
            self._require_feature(config, "PEP node configuration (XEP-0060 §8.2)")
            affiliations = await self._iq(iq("get", _pubsub(E("affiliations", {"node": node}, ns=PUBSUB_OWNER),
                                                            owner=True)))
            self._require_feature(affiliations, "PEP affiliations (XEP-0060 §8.9)")
            for answer, what in ((config, "configuration"), (affiliations, "affiliations")):
                if answer.get("type") != "result":
                    raise SetupFailed(f"{self.name} cannot read the {what} of her node {node}: "
                                      f"<{error_condition(answer)}/>")
            values = forms.values(config.find(".//{jabber:x:data}x"))
            values.pop(forms.FORM_TYPE, None)
            return {"configuration": values,
                    "affiliations": {bare_of(a.get("jid")) or a.get("jid", ""): a.get("affiliation", "")
                                     for a in affiliations.iter(q(PUBSUB_OWNER, "affiliation"))}}
        return self._call(run)

    def has_node(self: "XmppParty", node: str) -> bool:
        """Does the own PEP service have this node (an owner's configuration request finds it)?"""
        async def run():
            answer = await self._iq(iq("get", _pubsub(E("configure", {"node": node}, ns=PUBSUB_OWNER), owner=True)))
            if answer.get("type") == "result":
                return True
            if error_condition(answer) == "item-not-found":
                return False
            self._require_feature(answer, "PEP node configuration (XEP-0060 §8.2)")
            raise SetupFailed(f"{self.name} cannot tell whether her node {node} exists: <{error_condition(answer)}/>")
        return self._call(run)

    # -- anyone's requests on someone's PEP service --------------------------------------------------------------------

    async def _pubsub_ask(self: "XmppParty", request: Element) -> PubsubOutcome:
        answer = await self._answer_or_refusal(request, PubsubOutcome)
        if isinstance(answer, PubsubOutcome):
            return answer
        if answer.get("type") == "error":
            return PubsubOutcome(refused=True, condition=error_condition(answer), reason=_reason(answer),
                                 detail=describe(answer))
        return PubsubOutcome(refused=False, data=[describe(i, 4000) for i in answer.iter(q(PUBSUB, "item"))],
                             detail=describe(answer))

    def fetches_items_of(self: "XmppParty", owner: "XmppParty", node: str = LOCATION) -> PubsubOutcome:
        """Retrieve the items of `owner`'s node (XEP-0060 §6.5); granted items are in `data`."""
        return self._call(self._pubsub_ask, iq("get", _pubsub(E("items", {"node": node}, ns=PUBSUB)), to=owner.bare))

    def publishes_to(self: "XmppParty", owner: "XmppParty", node: str = LOCATION, *,
                     replacing: Update | None = None) -> PubsubOutcome:
        """Publish a canary item into `owner`'s node; `replacing` reuses the id of that item (an overwrite)."""
        canary = self.rt.canary(f"{self.name}-pep-into-{owner.name}")

        async def run():
            await self._ensure_online()
            update = self._update("pep item", canary)
            item = E("item", {"id": item_id(replacing or update)}, _payload(canary), ns=PUBSUB)
            outcome = await self._pubsub_ask(iq("set", _pubsub(E("publish", {"node": node}, item, ns=PUBSUB)),
                                                to=owner.bare))
            outcome.update = update
            return outcome
        return self._call(run)

    def retracts_item_of(self: "XmppParty", owner: "XmppParty", item: Update, node: str = LOCATION) -> PubsubOutcome:
        """Retract `owner`'s item (XEP-0060 §7.2) from their node."""
        retract = E("retract", {"node": node}, E("item", {"id": item_id(item)}, ns=PUBSUB), ns=PUBSUB)
        return self._call(self._pubsub_ask, iq("set", _pubsub(retract), to=owner.bare))

    def changes_publishers_of(self: "XmppParty", owner: "XmppParty", *, grant: "XmppParty",
                              node: str = LOCATION) -> PubsubOutcome:
        """Make `grant` a publisher of `owner`'s node (an owner's affiliations change, XEP-0060 §8.9.2)."""
        affiliation = E("affiliation", {"jid": grant.bare, "affiliation": "publisher"}, ns=PUBSUB_OWNER)
        request = _pubsub(E("affiliations", {"node": node}, affiliation, ns=PUBSUB_OWNER), owner=True)
        return self._call(self._pubsub_ask, iq("set", request, to=owner.bare))

    def reconfigures_node_of(self: "XmppParty", owner: "XmppParty", node: str = LOCATION,
                             **options: str) -> PubsubOutcome:
        """Change the configuration of `owner`'s node (an owner's request, XEP-0060 §8.2)."""
        form = _config_form({f"pubsub#{k}": [v] for k, v in options.items()})
        request = _pubsub(E("configure", {"node": node}, form, ns=PUBSUB_OWNER), owner=True)
        return self._call(self._pubsub_ask, iq("set", request, to=owner.bare))

    def creates_node_on(self: "XmppParty", owner: "XmppParty", node: str = PLANTED) -> PubsubOutcome:
        """Create a node on `owner`'s PEP service (XEP-0060 §8.1)."""
        outcome = self._call(self._pubsub_ask, iq("set", _pubsub(E("create", {"node": node}, ns=PUBSUB)),
                                                  to=owner.bare))
        outcome.node = node
        return outcome

    async def _delete_suite_nodes(self: "XmppParty") -> None:
        """Remove what earlier tests left on the own PEP service (errors, e.g. no PEP at all, are ignored)."""
        for node in SUITE_NODES:
            await self._iq(iq("set", _pubsub(E("delete", {"node": node}, ns=PUBSUB_OWNER), owner=True)))
