"""registry-admin's settings, read from the environment (plus :class:`CommonSettings`).

=====================================  ===========================================================
variable                               meaning
=====================================  ===========================================================
``UNIFY_REGISTRY_SERVICE``             catalog service name of the registry instances
                                       (default ``registry``)
``UNIFY_REGISTRY_DOMAINS``             comma-separated domains; ``<service>.<domain>`` is in the
                                       certificate and gets a ``certs.d`` directory
``UNIFY_REGISTRY_EXTRA_NAMES``         more DNS names for the certificate (comma-separated)
``UNIFY_REGISTRY_STATE_DIR``           CA, key, generated secrets (default
                                       ``/var/lib/unify/registry-admin``; 0700)
``UNIFY_REGISTRY_TLS_DIR``             where ``registry.crt``/``registry.key`` are written for the
                                       registries (default ``<state dir>/tls``)
``UNIFY_REGISTRY_CONFIG``              path of the registry configuration registry-admin
                                       renders for every instance (default
                                       ``<state dir>/registry.yml``; 0600: it holds the secret)
``UNIFY_REGISTRY_STORAGE_DIR``         the registries' shared storage (default
                                       ``/var/lib/docker-registry``)
``UNIFY_REGISTRY_LISTEN_PORT``         registry port written into the rendered config (5000)
``UNIFY_REGISTRY_CERTS_D``             dockerd's trust directory (default
                                       ``/etc/docker/certs.d``)
``UNIFY_REGISTRY_TRUST_PORTS``         extra ports to trust the CA on (e.g. a load balancer's)
``UNIFY_REGISTRY_NOTIFY_ADDR``         ``host:port`` of the notification endpoint
                                       (default ``0.0.0.0:5005``)
``UNIFY_REGISTRY_NOTIFY_URL``          the URL registries post to (default
                                       ``http://registry-admin:5005/notify``)
``UNIFY_REGISTRY_NOTIFY_TOKEN_FILE``   file with the notification bearer token (default:
                                       generated into the state dir)
``UNIFY_REGISTRY_HTTP_SECRET_FILE``    file with ``REGISTRY_HTTP_SECRET`` (default: generated
                                       once into the state dir)
``UNIFY_REGISTRY_URL``                 registry API base URL used to resolve tags (default
                                       ``https://127.0.0.1:5000``)
``UNIFY_REGISTRY_CA_FILE``             CA bundle to verify ``UNIFY_REGISTRY_URL`` (default: the
                                       generated CA)
``UNIFY_REGISTRY_CERT_DAYS``           server certificate lifetime, days (default 90)
``UNIFY_REGISTRY_CA_DAYS``             CA lifetime, days (default 3650)
``UNIFY_REGISTRY_RESTART``             ``none``, ``docker`` (restart the container named in the
                                       registrator instance id) or ``command``
``UNIFY_REGISTRY_RESTART_COMMAND``     argv (JSON list) run per instance with ``{instance_id}``,
                                       ``{node}``, ``{host}``, ``{port}`` substituted (no shell)
``UNIFY_REGISTRY_RESTART_TIMEOUT``     seconds each instance may take to serve again (60)
``UNIFY_REGISTRY_RESOLVE_TIMEOUT``     seconds a push may take until its tag resolves (10)
``UNIFY_REGISTRY_BIN``                 distribution's binary for ``garbage-collect`` (default
                                       ``docker-registry``, Debian's name)
``UNIFY_REGISTRY_GC_TIMEOUT``          seconds one ``garbage-collect`` run may take (3600)
``UNIFY_REGISTRY_PROTECT_FILE``        file of ``repository@digest`` (or ``:tag``) lines that gc
                                       keeps besides running Swarm tasks' images (a hook for
                                       wireline's releases)
``UNIFY_REGISTRY_MODE``                ``manager`` (default: issues, restarts, notifications) or
                                       ``trust`` (only writes ``certs.d`` from the CA file)
=====================================  ===========================================================
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from unify_common.settings import CommonSettings, env_float, env_int

from .plan import is_hostname

__all__ = ["RegistryAdminSettings", "read_secret_file"]


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in (env.get(name, "") or "").split(",") if x.strip())


def read_secret_file(path: Path) -> str:
    """The first line of a secret file, stripped. :raises ValueError: empty or unreadable."""
    try:
        value = path.read_text().strip().splitlines()
    except OSError as err:
        raise ValueError(f"cannot read secret file {path}: {err.strerror}") from None
    if not value or not value[0].strip():
        raise ValueError(f"secret file {path} is empty")
    return value[0].strip()


@dataclass(frozen=True, kw_only=True)
class RegistryAdminSettings:
    """Everything registry-admin needs; see the module doc for the variables."""

    common: CommonSettings
    service: str = "registry"
    domains: tuple[str, ...] = ()
    extra_names: tuple[str, ...] = ()
    state_dir: Path = Path("/var/lib/unify/registry-admin")
    tls_dir: Path = Path("/var/lib/unify/registry-admin/tls")
    config_path: Path = Path("/var/lib/unify/registry-admin/registry.yml")
    storage_dir: Path = Path("/var/lib/docker-registry")
    listen_port: int = 5000
    certs_d: Path = Path("/etc/docker/certs.d")
    trust_ports: tuple[int, ...] = ()
    notify_host: str = "0.0.0.0"
    notify_port: int = 5005
    notify_url: str = "http://registry-admin:5005/notify"
    notify_token_file: Path | None = None
    http_secret_file: Path | None = None
    registry_url: str = "https://127.0.0.1:5000"
    ca_file: Path | None = None
    cert_days: int = 90
    ca_days: int = 3650
    restart: str = "none"
    restart_command: tuple[str, ...] = field(default=())
    restart_timeout: float = 60.0
    resolve_timeout: float = 10.0
    mode: str = "manager"
    registry_bin: str = "docker-registry"
    gc_timeout: float = 3600.0
    protect_file: Path | None = None

    @property
    def ca_cert_path(self) -> Path:
        """The CA certificate (public)."""
        return self.state_dir / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        """The CA private key (0600)."""
        return self.state_dir / "ca.key"

    @property
    def verify_ca(self) -> Path:
        """The CA bundle used to verify the registry API."""
        return self.ca_file or self.ca_cert_path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "RegistryAdminSettings":
        """Read the settings.

        :raises ValueError: a value is malformed (the message names the variable).
        """
        env = os.environ if env is None else env
        service = env.get("UNIFY_REGISTRY_SERVICE", "") or "registry"
        domains = _list(env, "UNIFY_REGISTRY_DOMAINS")
        extra = _list(env, "UNIFY_REGISTRY_EXTRA_NAMES")
        for name in (*(f"{service}.{d}" for d in domains), *extra):
            if not is_hostname(name):
                raise ValueError(f"UNIFY_REGISTRY_DOMAINS/EXTRA_NAMES: {name!r} is not a "
                                 "host name")
        state_dir = Path(env.get("UNIFY_REGISTRY_STATE_DIR", "")
                         or "/var/lib/unify/registry-admin").absolute()
        ports = []
        for raw in _list(env, "UNIFY_REGISTRY_TRUST_PORTS"):
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ValueError(f"UNIFY_REGISTRY_TRUST_PORTS: {raw!r} is not a port")
            ports.append(int(raw))
        notify = env.get("UNIFY_REGISTRY_NOTIFY_ADDR", "") or "0.0.0.0:5005"
        host, sep, port = notify.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"UNIFY_REGISTRY_NOTIFY_ADDR must be host:port, got {notify!r}")
        restart = env.get("UNIFY_REGISTRY_RESTART", "") or "none"
        if restart not in ("none", "docker", "command"):
            raise ValueError("UNIFY_REGISTRY_RESTART must be none, docker or command")
        command: tuple[str, ...] = ()
        if restart == "command":
            try:
                parsed = json.loads(env.get("UNIFY_REGISTRY_RESTART_COMMAND", "") or "null")
            except json.JSONDecodeError:
                parsed = None
            if not (isinstance(parsed, list) and parsed and all(isinstance(a, str)
                                                                for a in parsed)):
                raise ValueError("UNIFY_REGISTRY_RESTART_COMMAND must be a JSON list of "
                                 "strings when UNIFY_REGISTRY_RESTART=command")
            command = tuple(parsed)
        mode = env.get("UNIFY_REGISTRY_MODE", "") or "manager"
        if mode not in ("manager", "trust"):
            raise ValueError("UNIFY_REGISTRY_MODE must be manager or trust")
        listen_port = env_int(env, "UNIFY_REGISTRY_LISTEN_PORT", 5000)
        cert_days = env_int(env, "UNIFY_REGISTRY_CERT_DAYS", 90)
        ca_days = env_int(env, "UNIFY_REGISTRY_CA_DAYS", 3650)
        if not 1 <= cert_days <= 825 or not cert_days < ca_days:
            raise ValueError("UNIFY_REGISTRY_CERT_DAYS must be 1-825 and below the CA's days")

        def path(name: str) -> Path | None:
            raw = env.get(name, "")
            return Path(raw).absolute() if raw else None

        return cls(
            common=CommonSettings.from_env(env),
            service=service, domains=domains, extra_names=extra, state_dir=state_dir,
            tls_dir=path("UNIFY_REGISTRY_TLS_DIR") or state_dir / "tls",
            config_path=path("UNIFY_REGISTRY_CONFIG") or state_dir / "registry.yml",
            storage_dir=path("UNIFY_REGISTRY_STORAGE_DIR") or Path("/var/lib/docker-registry"),
            listen_port=listen_port,
            certs_d=path("UNIFY_REGISTRY_CERTS_D") or Path("/etc/docker/certs.d"),
            trust_ports=tuple(ports),
            notify_host=host or "0.0.0.0", notify_port=int(port),
            notify_url=env.get("UNIFY_REGISTRY_NOTIFY_URL", "")
            or "http://registry-admin:5005/notify",
            notify_token_file=path("UNIFY_REGISTRY_NOTIFY_TOKEN_FILE"),
            http_secret_file=path("UNIFY_REGISTRY_HTTP_SECRET_FILE"),
            registry_url=(env.get("UNIFY_REGISTRY_URL", "")
                          or "https://127.0.0.1:5000").rstrip("/"),
            ca_file=path("UNIFY_REGISTRY_CA_FILE"),
            cert_days=cert_days, ca_days=ca_days,
            restart=restart, restart_command=command,
            restart_timeout=env_float(env, "UNIFY_REGISTRY_RESTART_TIMEOUT", 60.0),
            resolve_timeout=env_float(env, "UNIFY_REGISTRY_RESOLVE_TIMEOUT", 10.0),
            mode=mode,
            registry_bin=env.get("UNIFY_REGISTRY_BIN", "") or "docker-registry",
            gc_timeout=env_float(env, "UNIFY_REGISTRY_GC_TIMEOUT", 3600.0),
            protect_file=path("UNIFY_REGISTRY_PROTECT_FILE"),
        )
