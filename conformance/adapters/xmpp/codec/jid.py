"""JIDs (RFC 7622): parsing and PRECIS normalisation, so that identity comparisons are made on canonical forms.

Security decisions about "who is this" must compare canonical JIDs: a blocklist that stores `Mallory@Example.test`
but compares raw strings lets `mallory@example.test` through. Both the reference service and the harness use this
module; the harness uses it to compute what a conformant service must treat as the same identity.
"""

from __future__ import annotations

import dataclasses

import precis_i18n

_LOCALPART = precis_i18n.get_profile("UsernameCaseMapped")
_RESOURCE = precis_i18n.get_profile("OpaqueString")


class JidError(ValueError):
    pass


def _domain(domain: str) -> str:
    domain = domain.rstrip(".")
    if not domain or len(domain.encode()) > 1023:
        raise JidError("empty or oversized domainpart")
    try:
        labels = [label.encode("idna").decode("ascii") for label in domain.split(".")]
    except UnicodeError as exc:
        raise JidError(f"invalid domainpart {domain!r}: {exc}") from None
    return ".".join(labels).lower()


@dataclasses.dataclass(frozen=True, order=True)
class JID:
    local: str | None
    domain: str
    resource: str | None = None

    @classmethod
    def parse(cls, text: str) -> "JID":
        if not isinstance(text, str) or not text:
            raise JidError("empty JID")
        rest, slash, resource = text.partition("/")
        if slash and not resource:
            raise JidError("empty resourcepart")
        local, at, domain = rest.rpartition("@")
        if at and not local:
            raise JidError("empty localpart")
        try:
            norm_local = _LOCALPART.enforce(local) if at else None
            norm_resource = _RESOURCE.enforce(resource) if slash else None
        except UnicodeError as exc:
            raise JidError(f"invalid JID {text!r}: {exc}") from None
        if norm_local is not None and len(norm_local.encode()) > 1023:
            raise JidError("oversized localpart")
        return cls(norm_local, _domain(domain), norm_resource)

    @property
    def bare(self) -> "JID":
        return JID(self.local, self.domain) if self.resource else self

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    def with_resource(self, resource: str) -> "JID":
        return JID(self.local, self.domain, resource)

    def __str__(self) -> str:
        text = f"{self.local}@{self.domain}" if self.local else self.domain
        return f"{text}/{self.resource}" if self.resource else text


def try_parse(text: str | None) -> JID | None:
    if text is None:
        return None
    try:
        return JID.parse(text)
    except JidError:
        return None
