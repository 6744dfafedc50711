"""Personal eventing (XEP-0163): a small publish-subscribe service (XEP-0060) at every account's bare JID.

Who may do what, decided first on every request:
- the owner (the account's bare JID) creates, configures, deletes and purges nodes, sets affiliations, publishes
  and retracts; XEP-0163 auto-creates a node on the owner's first publish (publish-options become its
  configuration, or act as preconditions on an existing node, XEP-0060 §7.1.5);
- anyone else may publish or retract only where the owner made them a publisher (or the publish model is open),
  and may never create nodes or touch owner operations (<forbidden/>, XEP-0060 §7.1.3.1, §8.1.3, §8.2.3.3,
  §8.9.2.3);
- item retrieval follows the node's access model (XEP-0060 §6.5.9): 'presence' (the default of XEP-0163) lets
  contacts subscribed to the owner's presence read, 'roster' the contacts in the allowed roster groups,
  'whitelist' members and publishers, 'open' anyone; outcasts never.

Configuration, affiliations and items are stored durably (`store.py`). Notifications are not sent: this service
has no node subscriptions and ignores entity capabilities, so items are read by retrieval, which is what the
conformance cases observe.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from conformance.adapters.xmpp.codec import forms
from conformance.adapters.xmpp.codec.jid import JID, JidError
from conformance.adapters.xmpp.codec.stanza import (CLIENT, DISCO_INFO, NODE_CONFIG, PUBSUB, PUBSUB_ERRORS,
                                                    PUBSUB_OWNER, iq_result, q, stanza_error)
from conformance.adapters.xmpp.codec.xml import E, Element, split, to_bytes

if TYPE_CHECKING:
    from .service import Service

ACCESS_MODEL = "pubsub#access_model"
PUBLISH_MODEL = "pubsub#publish_model"
MAX_ITEMS = "pubsub#max_items"
ROSTER_GROUPS = "pubsub#roster_groups_allowed"
ACCESS_MODELS = ("open", "presence", "roster", "whitelist")
PUBLISH_MODELS = ("publishers", "open")
AFFILIATIONS = ("owner", "publisher", "member", "none", "outcast")
FIELD_TYPES = {ACCESS_MODEL: "list-single", PUBLISH_MODEL: "list-single", MAX_ITEMS: "text-single",
               ROSTER_GROUPS: "list-multi"}
FEATURES = ("access-open", "access-presence", "access-roster", "access-whitelist", "auto-create", "config-node",
            "create-nodes", "delete-items", "delete-nodes", "modify-affiliations", "persistent-items", "publish",
            "publish-options", "purge-nodes", "retrieve-affiliations", "retrieve-items", "retract-items")

MAX_NODES_PER_USER = 64
MAX_ITEMS_PER_NODE = 100
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_NODE_NAME = 256
MAX_AFFILIATIONS = 256
MAX_GROUPS = 64


def default_config() -> dict[str, list[str]]:
    return {ACCESS_MODEL: ["presence"], PUBLISH_MODEL: ["publishers"], MAX_ITEMS: ["1"], ROSTER_GROUPS: []}


class Refused(Exception):
    """A pubsub error: stanza error condition, type, and the pubsub#errors condition that says why."""

    def __init__(self, condition: str, error_type: str = "cancel", specific: str | None = None):
        super().__init__(condition)
        self.condition, self.error_type, self.specific = condition, error_type, specific


def forbidden() -> Refused:
    return Refused("forbidden", "auth")


class Pep:
    def __init__(self, service: "Service"):
        self.service = service
        self.store = service.store
        self.domain = service.config.domain
        self._unsaved: dict[tuple[str, str], dict[str, list[str]]] = {}  # flaw 'pep-config-not-persisted' only

    # -- entry points (AccountIq: IQs to an account's bare JID, or to none for one's own) ------------------------------

    def handle(self, session, requester: JID, owner: str, is_owner: bool, request: Element, pubsub: Element) -> None:
        self._answer(requester, request, self._pubsub, owner, is_owner, pubsub)

    def handle_owner(self, session, requester: JID, owner: str, is_owner: bool, request: Element,
                     pubsub: Element) -> None:
        self._answer(requester, request, self._pubsub_owner, owner, is_owner, pubsub)

    def _answer(self, requester: JID, request: Element, handler, *args) -> None:
        try:
            payload = handler(requester, request.get("type"), *args)
        except Refused as refusal:
            extra = E(refusal.specific, ns=PUBSUB_ERRORS) if refusal.specific else None
            self.service.deliver_direct(requester, stanza_error(request, refusal.condition, refusal.error_type,
                                                                extra=extra))
            return
        self.service.deliver_direct(requester, iq_result(request, payload))

    # -- the 'pubsub' namespace ----------------------------------------------------------------------------------------

    def _pubsub(self, requester: JID, itype: str, owner: str, is_owner: bool, pubsub: Element) -> Element | None:
        actions = list(pubsub)
        if not actions:
            raise Refused("bad-request", "modify")
        action = split(actions[0].tag)[1]
        extra = actions[1:]
        if itype == "get" and action == "items" and not extra:
            return self._items(requester, owner, actions[0])
        if itype == "set" and action == "publish" and all(e.tag == q(PUBSUB, "publish-options") for e in extra) \
                and len(extra) <= 1:
            return self._publish(requester, owner, is_owner, actions[0], extra[0] if extra else None)
        if itype == "set" and action == "retract" and not extra:
            return self._retract(requester, owner, actions[0])
        if itype == "set" and action == "create" and all(e.tag == q(PUBSUB, "configure") for e in extra) \
                and len(extra) <= 1:
            return self._create(requester, owner, is_owner, actions[0], extra[0] if extra else None)
        if action in ("subscribe", "unsubscribe", "options", "subscriptions", "affiliations", "default"):
            raise Refused("feature-not-implemented", "cancel", "unsupported")
        raise Refused("bad-request", "modify")

    def _items(self, requester: JID, owner: str, items: Element) -> Element:
        name, node = self._node(owner, items)
        self._check_access(requester, owner, node)
        wanted = [i.get("id") for i in items.findall(q(PUBSUB, "item")) if i.get("id")]
        stored = [i for i in node["items"] if not wanted or i["id"] in wanted]
        limit = items.get("max_items")
        if limit is not None and limit.isdigit():
            stored = stored[-int(limit):] if int(limit) else []
        answer = E("items", {"node": name}, ns=PUBSUB)
        for item in stored:
            answer.append(E("item", {"id": item["id"]}, self.service.parse_stored(item["payload"]), ns=PUBSUB))
        return E("pubsub", None, answer, ns=PUBSUB)

    def _check_access(self, requester: JID, owner: str, node: dict) -> None:
        """XEP-0060 §6.5.9: may `requester` retrieve the items of `owner`'s node?"""
        affiliation = self.affiliation(owner, node, requester)
        if affiliation == "owner":
            return
        vague = self.service.flawed("pep-vague-access-errors")
        if affiliation == "outcast":
            raise forbidden()
        model = self.config(owner, node)[ACCESS_MODEL][0]
        contact = self.store.item(owner, str(requester.bare)) if requester.domain == self.domain else None
        subscribed = contact is not None and contact.has_from
        if model == "open":
            return
        if model == "roster" and self.service.flawed("pep-ignores-roster-groups"):
            model = "presence"  # flaw: the roster model checked like the presence model, groups never looked at
        if model == "presence" and not subscribed:
            raise forbidden() if vague else Refused("not-authorized", "auth", "presence-subscription-required")
        if model == "roster":
            allowed = set(self.config(owner, node)[ROSTER_GROUPS])
            if contact is None or not allowed.intersection(contact.groups):
                raise forbidden() if vague else Refused("not-authorized", "auth", "not-in-roster-group")
        if model == "whitelist" and affiliation not in ("publisher", "member"):
            raise forbidden() if vague else Refused("not-allowed", "cancel", "closed-node")

    def _publish(self, requester: JID, owner: str, is_owner: bool, publish: Element,
                 options: Element | None) -> Element:
        name = self._name(publish)
        items = publish.findall(q(PUBSUB, "item"))
        if len(items) != 1:
            raise Refused("bad-request", "modify", "item-required" if not items else "invalid-payload")
        payload = list(items[0])
        if len(payload) != 1:
            raise Refused("bad-request", "modify", "payload-required" if not payload else "invalid-payload")
        raw = to_bytes(payload[0], CLIENT).decode()
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise Refused("not-acceptable", "modify", "payload-too-big")
        wanted = forms.values(options.find(".//{jabber:x:data}x")) if options is not None else {}
        node = self.store.pep.get(owner, {}).get(name)
        if node is None:
            if not is_owner:
                raise forbidden()  # XEP-0163: nodes of a PEP service are created by its owner only
            node = self._new_node(owner, name, self._checked(default_config(), wanted, strict=True))
        else:
            affiliation = self.affiliation(owner, node, requester)
            may_publish = affiliation in ("owner", "publisher") or \
                (self.config(owner, node)[PUBLISH_MODEL][0] == "open" and affiliation != "outcast")
            if not may_publish and not self.service.flawed("pep-publish-by-anyone"):
                raise forbidden()  # XEP-0060 §7.1.3.1: insufficient privileges to publish
            if wanted and self._checked(self.config(owner, node), wanted, strict=True) != self.config(owner, node):
                raise Refused("conflict", "cancel", "precondition-not-met")  # XEP-0060 §7.1.5
        item_id = items[0].get("id") or uuid.uuid4().hex
        node["items"] = [i for i in node["items"] if i["id"] != item_id]
        node["items"].append({"id": item_id, "payload": raw, "publisher": str(requester.bare)})
        self._trim(owner, node)
        self.store.save()
        self.service.log(f"pep: {requester} published item {item_id} to {owner}'s node {name}")
        return E("pubsub", None, E("publish", {"node": name}, E("item", {"id": item_id}, ns=PUBSUB), ns=PUBSUB),
                 ns=PUBSUB)

    def _retract(self, requester: JID, owner: str, retract: Element) -> Element | None:
        name, node = self._node(owner, retract)
        ids = [i.get("id") for i in retract.findall(q(PUBSUB, "item"))]
        if len(ids) != 1 or not ids[0]:
            raise Refused("bad-request", "modify", "item-required")
        affiliation = self.affiliation(owner, node, requester)
        if affiliation not in ("owner", "publisher") and not self.service.flawed("pep-retract-by-anyone"):
            raise forbidden()  # XEP-0060 §7.2.3.1: insufficient privileges to retract
        if not any(i["id"] == ids[0] for i in node["items"]):
            raise Refused("item-not-found")
        node["items"] = [i for i in node["items"] if i["id"] != ids[0]]
        self.store.save()
        self.service.log(f"pep: {requester} retracted item {ids[0]} from {owner}'s node {name}")
        return None

    def _create(self, requester: JID, owner: str, is_owner: bool, create: Element,
                configure: Element | None) -> Element | None:
        self._owner_only(is_owner)
        name = create.get("node")
        if not name:
            raise Refused("not-acceptable", "modify", "nodeid-required")  # no instant nodes on a PEP service
        name = self._name(create)
        if name in self.store.pep.get(owner, {}):
            raise Refused("conflict")
        form = configure.find("{jabber:x:data}x") if configure is not None else None
        self._new_node(owner, name, self._checked(default_config(), forms.values(form), strict=True))
        self.store.save()
        return None

    # -- the 'pubsub#owner' namespace ------------------------------------------------------------------------------------

    def _pubsub_owner(self, requester: JID, itype: str, owner: str, is_owner: bool,
                      pubsub: Element) -> Element | None:
        self._owner_only(is_owner)
        actions = list(pubsub)
        if len(actions) != 1:
            raise Refused("bad-request", "modify")
        action = actions[0]
        local = split(action.tag)[1]
        if local == "default" and itype == "get":
            return E("pubsub", None, E("default", None, self._form("form", default_config()), ns=PUBSUB_OWNER),
                     ns=PUBSUB_OWNER)
        name, node = self._node(owner, action)
        if local == "configure" and itype == "get":
            return E("pubsub", None, E("configure", {"node": name}, self._form("form", self.config(owner, node)),
                                       ns=PUBSUB_OWNER), ns=PUBSUB_OWNER)
        if local == "configure" and itype == "set":
            self._configure(owner, name, node, action.find("{jabber:x:data}x"))
            return None
        if local == "affiliations" and itype == "get":
            answer = E("affiliations", {"node": name}, E("affiliation", {"jid": f"{owner}@{self.domain}",
                                                                         "affiliation": "owner"}, ns=PUBSUB_OWNER),
                       ns=PUBSUB_OWNER)
            for jid, affiliation in sorted(node["affiliations"].items()):
                answer.append(E("affiliation", {"jid": jid, "affiliation": affiliation}, ns=PUBSUB_OWNER))
            return E("pubsub", None, answer, ns=PUBSUB_OWNER)
        if local == "affiliations" and itype == "set":
            self._set_affiliations(owner, node, action)
            return None
        if local == "delete" and itype == "set":
            del self.store.pep[owner][name]
            self._unsaved.pop((owner, name), None)
            self.store.save()
            return None
        if local == "purge" and itype == "set":
            node["items"] = []
            self.store.save()
            return None
        raise Refused("feature-not-implemented", "cancel", "unsupported")

    def _configure(self, owner: str, name: str, node: dict, form: Element | None) -> None:
        if form is None:
            raise Refused("bad-request", "modify")
        if form.get("type") == "cancel":
            return
        if form.get("type") != "submit" or forms.form_type(form) not in (None, NODE_CONFIG):
            raise Refused("bad-request", "modify")
        config = self._checked(self.config(owner, node), forms.values(form), strict=True)
        if self.service.flawed("pep-config-not-persisted"):
            self._unsaved[(owner, name)] = config  # flaw: the change lives in the node cache, never in the store
        else:
            node["config"] = config
        self._trim(owner, node)
        self.store.save()
        self.service.log(f"pep: {owner} configured node {name}: {config}")

    def _set_affiliations(self, owner: str, node: dict, action: Element) -> None:
        changes = {}
        for element in action.findall(q(PUBSUB_OWNER, "affiliation")):
            affiliation = element.get("affiliation")
            try:
                jid = JID.parse(element.get("jid", "")).bare
            except JidError:
                raise Refused("jid-malformed", "modify") from None
            if affiliation not in AFFILIATIONS or affiliation == "owner" or \
                    (jid.local == owner and jid.domain == self.domain):
                raise Refused("not-acceptable", "modify")  # the owner stays the only owner
            changes[str(jid)] = affiliation
        current = dict(node["affiliations"])
        for jid, affiliation in changes.items():
            if affiliation == "none":
                current.pop(jid, None)
            else:
                current[jid] = affiliation
        if len(current) > MAX_AFFILIATIONS:
            raise Refused("not-acceptable", "modify")
        node["affiliations"] = current
        self.store.save()

    # -- helpers ---------------------------------------------------------------------------------------------------------

    def _owner_only(self, is_owner: bool) -> None:
        if not is_owner and not self.service.flawed("pep-owner-operations-unchecked"):
            raise forbidden()  # XEP-0060 §8.1.3, §8.2.3.3, §8.9.2.3 (and XEP-0163: the account owns its service)

    def affiliation(self, owner: str, node: dict, requester: JID) -> str:
        if requester.local == owner and requester.domain == self.domain:
            return "owner"
        return node["affiliations"].get(str(requester.bare), "none")

    def config(self, owner: str, node: dict) -> dict[str, list[str]]:
        return self._unsaved.get((owner, node["name"]), node["config"])

    @staticmethod
    def _name(element: Element) -> str:
        name = element.get("node")
        if not name or len(name) > MAX_NODE_NAME:
            raise Refused("bad-request", "modify", "nodeid-required")
        return name

    def _node(self, owner: str, element: Element) -> tuple[str, dict]:
        name = self._name(element)
        node = self.store.pep.get(owner, {}).get(name)
        if node is None:
            raise Refused("item-not-found")
        return name, node

    def _new_node(self, owner: str, name: str, config: dict[str, list[str]]) -> dict:
        nodes = self.store.pep.setdefault(owner, {})
        if len(nodes) >= MAX_NODES_PER_USER:
            raise Refused("not-allowed", "cancel")
        node = {"name": name, "config": config, "affiliations": {}, "items": []}
        nodes[name] = node
        return node

    def _trim(self, owner: str, node: dict) -> None:
        keep = int(self.config(owner, node)[MAX_ITEMS][0])
        del node["items"][:-keep]

    @staticmethod
    def _checked(base: dict[str, list[str]], wanted: dict[str, list[str]], *, strict: bool) -> dict[str, list[str]]:
        """`base` with the submitted values applied; an unknown field or a value out of range is not acceptable."""
        config = {var: list(values) for var, values in base.items()}
        for var, values in wanted.items():
            if var == forms.FORM_TYPE:
                continue
            if var == ACCESS_MODEL and len(values) == 1 and values[0] in ACCESS_MODELS:
                config[var] = values
            elif var == PUBLISH_MODEL and len(values) == 1 and values[0] in PUBLISH_MODELS:
                config[var] = values
            elif var == MAX_ITEMS and len(values) == 1 and values[0].isdigit() and \
                    1 <= int(values[0]) <= MAX_ITEMS_PER_NODE:
                config[var] = [str(int(values[0]))]
            elif var == ROSTER_GROUPS and len(values) <= MAX_GROUPS and all(len(v) <= 1023 for v in values):
                config[var] = sorted(set(values))
            elif strict:
                raise Refused("not-acceptable", "modify", "unsupported-access-model" if var == ACCESS_MODEL else None)
        return config

    @staticmethod
    def _form(type_: str, config: dict[str, list[str]]) -> Element:
        return forms.form(type_, config, form_type=NODE_CONFIG, field_types=FIELD_TYPES)

    @staticmethod
    def disco_identity() -> Element:
        return E("identity", {"category": "pubsub", "type": "pep"}, ns=DISCO_INFO)

    @staticmethod
    def disco_features() -> list[str]:
        return [PUBSUB] + [f"{PUBSUB}#{feature}" for feature in FEATURES]
