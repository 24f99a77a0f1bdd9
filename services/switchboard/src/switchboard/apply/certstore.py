"""Read the certificate directory: which PEM bundles HAProxy can use and which names they cover.

A bundle is one ``<name>.pem`` file (name of ``[A-Za-z0-9._-]``) holding the certificate chain
(leaf first) and its unencrypted private key, the format HAProxy's ``crt`` takes (HAProxy 2.6
configuration manual, 5.1 ``crt``). Names come from the leaf's subjectAltName DNS entries, or
its common name when it has none. A bundle that cannot be used (unreadable, no key, key not
matching the leaf, encrypted key) is skipped and reported as ``invalid-certificate``; the other
bundles are still used. Key material is never logged or reported.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from unify_common.problems import Problem

from ..model import Certificate

__all__ = ["CertificateStore", "load_certificates"]

_FILE_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}\.pem$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]+$")
_NAME_RE = re.compile(r"^(?:\*\.)?[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})*$")
#: how public keys are compared: DER SubjectPublicKeyInfo
_DER, _SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def _names(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        raw = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        raw = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(sorted({n.lower() for n in raw if _NAME_RE.match(n.lower())}))


def _bundle(path: Path) -> Certificate:
    data = path.read_bytes()
    chain = x509.load_pem_x509_certificates(data)
    key = serialization.load_pem_private_key(_key_block(data), password=None)
    if key.public_key().public_bytes(_DER, _SPKI) != chain[0].public_key().public_bytes(_DER, _SPKI):
        raise ValueError("the private key does not match the first certificate")
    names = _names(chain[0])
    if not names:
        raise ValueError("the certificate names no DNS host")
    return Certificate(path=str(path), names=names,
                       fingerprint=hashlib.sha256(data).hexdigest())


def _key_block(data: bytes) -> bytes:
    match = re.search(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----",
                      data, re.S)
    if match is None:
        raise ValueError("no private key in the bundle")
    return match.group(0)


class CertificateStore:
    """The certificate directory ``cert_dir``, each bundle parsed once per change of the file.

    :meth:`load` lists the directory on every call (a bundle added, renewed or removed is seen
    at the next one), but parses a bundle only when its (name, modification time, size) is
    new; a file rewritten within the same nanosecond-mtime with the same size keeps its
    previous verdict. Only the entries of the last listing are kept.
    """

    def __init__(self, cert_dir: Path | None) -> None:
        self.cert_dir = cert_dir
        #: file name -> ((mtime_ns, size), bundle or problem)
        self._seen: dict[str, tuple[tuple[int, int], Certificate | Problem]] = {}

    def load(self) -> tuple[tuple[Certificate, ...], list[Problem]]:
        """Inventory the directory (``None`` or missing: no certificates, no problem).

        :returns: ``(usable bundles sorted by path, invalid-certificate problems)``.
        """
        cert_dir = self.cert_dir
        if cert_dir is None or not cert_dir.is_dir():
            self._seen = {}
            return (), []
        certs: list[Certificate] = []
        problems: list[Problem] = []
        seen: dict[str, tuple[tuple[int, int], Certificate | Problem]] = {}
        for path in sorted(cert_dir.iterdir()):
            if not path.name.endswith(".pem") or not path.is_file():
                continue
            if not _FILE_RE.match(path.name) or not _PATH_RE.match(str(path)):
                problems.append(Problem("invalid-certificate",
                                        "certificate paths may use only [A-Za-z0-9._/-]"))
                continue
            try:
                stat = path.stat()
            except OSError as err:
                problems.append(Problem("invalid-certificate", f"{path.name}: {err}"))
                continue
            version = (stat.st_mtime_ns, stat.st_size)
            known = self._seen.get(path.name)
            if known is not None and known[0] == version:
                verdict = known[1]
            else:
                verdict = _verdict(path)
            seen[path.name] = (version, verdict)
            if isinstance(verdict, Certificate):
                certs.append(verdict)
            else:
                problems.append(verdict)
        self._seen = seen
        return tuple(certs), problems


def _verdict(path: Path) -> Certificate | Problem:
    try:
        return _bundle(path)
    except (OSError, ValueError, TypeError) as err:
        return Problem("invalid-certificate", f"{path.name}: {err}")


def load_certificates(cert_dir: Path | None) -> tuple[tuple[Certificate, ...], list[Problem]]:
    """Inventory ``cert_dir`` once, parsing every bundle (``None`` or missing: no
    certificates, no problem); :class:`CertificateStore` remembers the bundles between calls.

    :returns: ``(usable bundles sorted by path, invalid-certificate problems)``.
    """
    return CertificateStore(cert_dir).load()
