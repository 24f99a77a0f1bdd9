"""registry-admin's files: the CA and secrets in the state directory, the registries' TLS
pair and configuration, and the CA in dockerd's ``certs.d``.

Every file is written atomically (:func:`unify_common.atomic.write_atomic`); private keys,
secrets and the rendered registry configuration (it holds the secret and the notification
token) are 0600, the state directory 0700.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import yaml

from unify_common.atomic import write_atomic

from . import pki
from .secret import new_secret
from .settings import read_secret_file

__all__ = ["MARKER", "ensure_ca", "ensure_secret", "read_server", "remove_stale_trust",
           "render_registry_config", "set_read_only", "write_server", "write_trust"]

#: file that marks a ``certs.d`` directory as written by registry-admin (removable by it)
MARKER = ".unify-registry-admin"


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def ensure_ca(state_dir: Path, now: dt.datetime, *, days: int) -> pki.Bundle:
    """Load the CA from ``state_dir`` (``ca.crt``, ``ca.key``) or create it once.

    :raises ValueError: the files exist but do not form a CA pair (never overwritten: every
        engine trusts that CA; an operator must look).
    """
    _private_dir(state_dir)
    cert_path, key_path = state_dir / "ca.crt", state_dir / "ca.key"
    if cert_path.exists() or key_path.exists():
        bundle = pki.load_bundle(_read(cert_path), _read(key_path))
        if bundle is None:
            raise ValueError(f"{cert_path} and {key_path} are not a certificate and its key; "
                             "move them away to make a new CA")
        return bundle
    bundle = pki.new_ca(now, days=days)
    write_atomic(key_path, bundle.key_pem, mode=0o600)
    write_atomic(cert_path, bundle.cert_pem, mode=0o644)
    return bundle


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def ensure_secret(state_dir: Path, name: str, given: Path | None) -> str:
    """The secret from ``given`` (a Swarm secret file) or ``<state_dir>/<name>``, generated
    there once (0600) when neither exists. :raises ValueError: ``given`` is unreadable."""
    if given is not None:
        return read_secret_file(given)
    _private_dir(state_dir)
    path = state_dir / name
    if path.exists():
        return read_secret_file(path)
    value = new_secret()
    write_atomic(path, (value + "\n").encode(), mode=0o600)
    return value


def read_server(tls_dir: Path) -> pki.Bundle | None:
    """The registries' current pair (``registry.crt``, ``registry.key``), or ``None``."""
    return pki.load_bundle(_read(tls_dir / "registry.crt"), _read(tls_dir / "registry.key"))


def write_server(tls_dir: Path, server: pki.Bundle) -> None:
    """Write the pair, key first: a registry restarted in between reads a matching pair
    at the latest once the certificate follows (distribution reads both at start only)."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(tls_dir / "registry.key", server.key_pem, mode=0o600)
    write_atomic(tls_dir / "registry.crt", server.cert_pem, mode=0o644)


def write_trust(certs_d: Path, dirs: list[str], ca_pem: bytes) -> list[str]:
    """Write ``<certs_d>/<host:port>/ca.crt`` for every name of ``dirs``; returns those
    whose file changed. A directory that exists without registry-admin's marker keeps its
    other files; ``ca.crt`` is still written (the CA is what that registry presents)."""
    changed = []
    for name in dirs:
        target = certs_d / name
        target.mkdir(parents=True, exist_ok=True)
        if not (target / MARKER).exists() and not any(target.iterdir()):
            (target / MARKER).write_bytes(b"")
        if write_atomic(target / "ca.crt", ca_pem, mode=0o644):
            changed.append(name)
    return changed


def remove_stale_trust(certs_d: Path, keep: list[str]) -> list[str]:
    """Remove directories registry-admin created (marker present) that are not in ``keep``."""
    removed: list[str] = []
    if not certs_d.is_dir():
        return removed
    for entry in sorted(certs_d.iterdir()):
        if entry.name not in keep and (entry / MARKER).exists():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def render_registry_config(*, storage_dir: Path, tls_dir: Path, port: int, secret: str,
                           notify_url: str, notify_token: str, read_only: bool) -> bytes:
    """distribution 2.8's ``config.yml`` for every instance (see its "Registry
    configuration reference"): filesystem storage with deletes enabled, optional read-only
    maintenance mode, TLS with the issued pair, the shared ``http.secret``, registry-admin as
    notification endpoint with the bearer token, blob media types ignored at the source."""
    config = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage_dir)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"readonly": {"enabled": bool(read_only)}},
        },
        "http": {
            "addr": f":{port}",
            "secret": secret,
            "tls": {"certificate": str(tls_dir / "registry.crt"),
                    "key": str(tls_dir / "registry.key")},
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "notifications": {"endpoints": [{
            "name": "unify-registry-admin",
            "url": notify_url,
            "headers": {"Authorization": [f"Bearer {notify_token}"]},
            "timeout": "2s",
            "threshold": 3,
            "backoff": "1s",
            "ignoredmediatypes": ["application/octet-stream"],
        }]},
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    return yaml.safe_dump(config, sort_keys=True).encode()


def set_read_only(config_path: Path, read_only: bool) -> bool:
    """Switch ``storage.maintenance.readonly.enabled`` in the registries' configuration and
    leave everything else as it is (0600, atomic). ``True`` when the file changed.

    :raises ValueError: the file is not a distribution configuration (no mapping).
    :raises OSError: it cannot be read or written.
    """
    config = yaml.safe_load(config_path.read_bytes())
    if not isinstance(config, dict) or not isinstance(config.get("storage"), dict):
        raise ValueError(f"{config_path} is not a registry configuration")
    maintenance = config["storage"].setdefault("maintenance", {})
    if not isinstance(maintenance, dict):
        raise ValueError(f"{config_path}: storage.maintenance is not a mapping")
    maintenance["readonly"] = {"enabled": bool(read_only)}
    return write_atomic(config_path, yaml.safe_dump(config, sort_keys=True).encode(),
                        mode=0o600)

