"""Certificates an attacker presents when it terminates TLS: all issued by the attacker's own CA (CA-R, made with
trustme), which a victim trusts only when a test says so (a client that trusts CA-R models a MITM the certificate
check cannot catch, so only channel binding can)."""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import functools
import shutil
import ssl
import tempfile
from pathlib import Path

from conformance import pki

KINDS = ("rogue-ca", "wrong-name", "expired", "other-domain")


@dataclasses.dataclass(frozen=True)
class Forged:
    kind: str
    names: tuple[str, ...]
    ca_file: Path  # CA-R, for a victim told to trust it
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@functools.lru_cache(maxsize=1)
def _rogue_ca() -> tuple[object, Path]:
    directory = Path(tempfile.mkdtemp(prefix="impp-rogue-ca-"))
    atexit.register(shutil.rmtree, directory, True)
    ca = pki.make_ca("impp-conformance attacker CA (CA-R)")
    (directory / "ca-r.pem").write_bytes(ca.cert_pem.bytes())
    return ca, directory


@functools.lru_cache(maxsize=32)
def forge(kind: str, domain: str) -> Forged:
    """A certificate of `kind` for someone claiming to be `domain`, signed by CA-R."""
    if kind not in KINDS:
        raise ValueError(f"unknown forged certificate {kind!r}; one of {', '.join(KINDS)}")
    ca, directory = _rogue_ca()
    now = datetime.datetime.now(datetime.timezone.utc)
    names = {"rogue-ca": (domain,), "wrong-name": (f"not-{domain}",), "expired": (domain,),
             "other-domain": (f"other.{domain}.example",)}[kind]
    window = {"not_before": now - datetime.timedelta(days=30), "not_after": now - datetime.timedelta(days=1)} \
        if kind == "expired" else {}
    cert_pem, key_pem = pki.issue(ca, *names, **window)
    # one file per (kind, domain): the cache holds several domains, and none may overwrite another's certificate
    cert_file, key_file = directory / f"{kind}-{domain}.crt", directory / f"{kind}-{domain}.key"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    key_file.chmod(0o600)
    return Forged(kind, names, directory / "ca-r.pem", cert_file, key_file)
