"""Test certificates made with trustme: the trusted test CA (CA-T) and server certificates for test domains.

Validity is capped at ten years and the extended-key-usage extension is non-critical, because real servers the
suite runs against (ejabberd's Erlang `public_key`) refuse trustme's year-3000 expiry and its critical EKU.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=3650)


@dataclasses.dataclass(frozen=True)
class CertFiles:
    ca: Path  # PEM of the issuing CA
    cert: Path  # PEM leaf certificate
    key: Path  # PEM private key
    combined: Path  # leaf + key in one PEM (the form ejabberd wants)
    peers: Path  # certificates the harness presents as other domains' servers (see write_peer_certs)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def make_ca(name: str = "impp-conformance test CA") -> trustme.CA:
    trustme.DEFAULT_EXPIRY = (_now() + VALIDITY).replace(tzinfo=None)  # the CA constructor has no expiry argument
    return trustme.CA(organization_name=name)


def issue(ca: trustme.CA, *names: str, not_before: datetime.datetime | None = None,
          not_after: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """A server (and client) certificate for `names`, signed by `ca`. Returns (cert PEM, key PEM)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans = [x509.DNSName(n) for n in names]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(days=1))
            .not_valid_after(not_after or now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert_pem, key_pem


def self_signed(*names: str) -> tuple[bytes, bytes]:
    """A certificate for `names` that vouches for itself (no CA at all). Returns (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


REMOTE_DOMAIN = "remote.test"  # the domain the harness plays as an honest peer server
EVIL_DOMAIN = "evil.test"  # the attacker's own, validly certified domain
SPOOF_DOMAIN = "spoof.test"  # a domain the attacker claims; the harness is its authoritative server (dialback)


def write_server_certs(directory: Path, domain: str, ca: trustme.CA | None = None) -> CertFiles:
    """Create (once) a CA (or use `ca`) and a certificate for `domain` in `directory`, plus the peer certificates
    the harness presents as other domains' servers (`peers/`); reuse them if they exist."""
    directory.mkdir(parents=True, exist_ok=True)
    files = CertFiles(directory / "ca.pem", directory / f"{domain}.crt", directory / f"{domain}.key",
                      directory / f"{domain}.pem", directory / "peers")
    if all(p.exists() for p in (files.ca, files.cert, files.key, files.combined, files.peers,
                                files.peers / f"{SPOOF_DOMAIN}.crt")):
        return files
    ca = ca or make_ca()
    write_peer_certs(ca, files.peers)
    cert_pem, key_pem = issue(ca, domain, f"*.{domain}")
    files.ca.write_bytes(ca.cert_pem.bytes())
    files.cert.write_bytes(cert_pem)
    files.key.write_bytes(key_pem)
    files.combined.write_bytes(cert_pem + key_pem)
    for path in (files.key, files.combined):
        os.chmod(path, 0o600)
    return files


def write_peer_certs(ca: trustme.CA, directory: Path) -> None:
    """What the harness presents when it plays another domain's server, all issued by the IUT's trusted CA:
    `remote.test` (valid), `evil.test` (valid, but for another domain than the one it will claim), an expired
    `remote.test` certificate, and `spoof.test` (for the harness as that domain's authoritative server, which the
    IUT asks to verify a dialback claim). Self-signed and rogue-CA certificates the harness makes itself."""
    directory.mkdir(parents=True, exist_ok=True)
    now = _now()
    for name, names, window in ((REMOTE_DOMAIN, (REMOTE_DOMAIN,), {}),
                                (EVIL_DOMAIN, (EVIL_DOMAIN,), {}),
                                (SPOOF_DOMAIN, (SPOOF_DOMAIN,), {}),
                                (f"{REMOTE_DOMAIN}-expired", (REMOTE_DOMAIN,),
                                 {"not_before": now - datetime.timedelta(days=30),
                                  "not_after": now - datetime.timedelta(days=1)})):
        cert_pem, key_pem = issue(ca, *names, **window)
        (directory / f"{name}.crt").write_bytes(cert_pem)
        (directory / f"{name}.key").write_bytes(key_pem)
        os.chmod(directory / f"{name}.key", 0o600)
