"""Protocol adapters, found by the profile's `target.protocol`. The suite never imports an adapter; the plugin does."""

from __future__ import annotations

import importlib

ADAPTERS = {"xmpp": ("conformance.adapters.xmpp", "XmppAdapter")}


def adapter_class(protocol: str):
    module_name, class_name = ADAPTERS[protocol]
    return getattr(importlib.import_module(module_name), class_name)
