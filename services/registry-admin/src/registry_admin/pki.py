"""The registry cluster's certificate authority and server certificate (pure: no files, no
network; the clock is passed in).

* :func:`new_ca` makes a self-signed CA (ECDSA P-256, ``basicConstraints CA:TRUE,
  pathlen:0``, ``keyUsage keyCertSign, cRLSign``), valid ``ca_days`` days.
* :func:`issue_server` signs a server certificate (ECDSA P-256, ``extendedKeyUsage
  serverAuth``) whose subjectAltName lists every DNS name and IP address of a
  :class:`SanSet`. Go's TLS client (dockerd, distribution) checks only the SANs, never the CN.
* :func:`renewal_reason` says whether a certificate must be re-issued: missing, another CA,
  SANs differ from the wanted set, or two thirds of its lifetime are gone.

PEM is the encoding everywhere (RFC 7468); keys are PKCS#8 without a passphrase, which is
what distribution's ``http.tls.key`` and Go's ``tls.LoadX509KeyPair`` read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Bundle", "SanSet", "cert_fingerprint", "issue_server", "load_bundle", "new_ca",
           "renewal_reason", "sans_of"]

#: the share of a certificate's lifetime after which it is re-issued
RENEW_AT = 2 / 3


@dataclass(frozen=True)
class SanSet:
    """The subjectAltNames a certificate must carry: DNS names (lower case) and IP
    addresses (text form), both sorted and without duplicates."""

    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()

    @classmethod
    def of(cls, dns: set[str] | list[str] | tuple[str, ...],
           ips: set[str] | list[str] | tuple[str, ...]) -> SanSet:
        """Normalise (lower-case names, canonical IP text) and sort."""
        return cls(tuple(sorted({d.lower().rstrip(".") for d in dns})),
                   tuple(sorted({str(ipaddress.ip_address(i)) for i in ips},
                                key=lambda a: (ipaddress.ip_address(a).version,
                                               ipaddress.ip_address(a)))))


@dataclass(frozen=True)
class Bundle:
    """A certificate with its private key, both PEM bytes."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.load_pem_x509_certificate(self.cert_pem)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def new_ca(now: dt.datetime, *, common_name: str = "Unify registry CA",
           days: int = 3650) -> Bundle:
    """A new self-signed CA valid from ``now`` (minus five minutes of clock skew) for
    ``days`` days. ``now`` must be timezone-aware (UTC)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Bundle(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_server(ca: Bundle, sans: SanSet, now: dt.datetime, *, days: int = 90,
                 common_name: str = "registry") -> Bundle:
    """A server certificate for ``sans`` signed by ``ca``, valid ``days`` days from ``now``
    (minus five minutes of skew).

    :raises ValueError: ``sans`` is empty.
    """
    if not sans.dns and not sans.ips:
        raise ValueError("a server certificate needs at least one name or address")
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    ca_cert = ca.cert
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.DNSName(d) for d in sans.dns] + [
        x509.IPAddress(ipaddress.ip_address(i)) for i in sans.ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                     key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)  # type: ignore[arg-type]
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return Bundle(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def sans_of(cert: x509.Certificate) -> SanSet:
    """The DNS names and IP addresses in ``cert``'s subjectAltName (empty when it has none)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return SanSet()
    return SanSet.of(ext.get_values_for_type(x509.DNSName),
                     [str(a) for a in ext.get_values_for_type(x509.IPAddress)])


def cert_fingerprint(cert_pem_or_der: bytes) -> str:
    """``sha256:<hex>`` of the certificate's DER encoding (PEM input is converted)."""
    der = cert_pem_or_der
    if cert_pem_or_der.lstrip().startswith(b"-----BEGIN"):
        der = x509.load_pem_x509_certificate(cert_pem_or_der).public_bytes(
            serialization.Encoding.DER)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def load_bundle(cert_pem: bytes | None, key_pem: bytes | None) -> Bundle | None:
    """A :class:`Bundle` when both PEMs parse and the key belongs to the certificate, else
    ``None`` (a damaged or half-written pair counts as missing)."""
    if not cert_pem or not key_pem:
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return None
    return Bundle(cert_pem, key_pem)


def renewal_reason(server: Bundle | None, ca: Bundle, wanted: SanSet,
                   now: dt.datetime) -> str | None:
    """Why ``server`` must be re-issued, or ``None`` when it is fine.

    Reasons: ``missing``; ``other-ca`` (not signed by ``ca``'s key); ``sans-changed``;
    ``renewal-due`` (``now`` is past two thirds of its validity); ``expired``.
    """
    if server is None:
        return "missing"
    cert = server.cert
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, Exception):  # InvalidSignature and friends
        return "other-ca"
    if sans_of(cert) != wanted:
        return "sans-changed"
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now >= end:
        return "expired"
    if now >= start + (end - start) * RENEW_AT:
        return "renewal-due"
    return None
