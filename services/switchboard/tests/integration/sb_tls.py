"""A throw-away CA and server certificates made with ``cryptography`` for the TLS tests."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["TestCA"]

_PEM = serialization.Encoding.PEM


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


class TestCA:
    """A CA whose certificate is at ``ca_path``; :meth:`issue` writes server bundles."""

    __test__ = False  # not a test class

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(_name("Unify Test CA"))
            .issuer_name(_name("Unify Test CA")).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256()))
        self.ca_path = directory / "ca.crt"
        self.ca_path.write_bytes(self.cert.public_bytes(_PEM))

    def issue(self, names: list[str], bundle: Path, *, key_of: Path | None = None) -> Path:
        """Write a PEM bundle (leaf certificate + private key) for ``names`` to ``bundle``.

        ``key_of``: put that other bundle's key instead (a key not matching the certificate).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(_name(names[0]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        key_pem = key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        if key_of is not None:
            text = key_of.read_bytes()
            key_pem = text[text.index(b"-----BEGIN PRIVATE KEY-----"):]
        bundle.parent.mkdir(parents=True, exist_ok=True)
        bundle.write_bytes(cert.public_bytes(_PEM) + key_pem)
        return bundle
