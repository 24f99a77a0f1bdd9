"""registry-admin's settings, read from the environment (plus :class:`CommonSettings`).

=====================================  ======================================================  ==========================
variable                               meaning                                                 default
=====================================  ======================================================  ==========================
``UNIFY_REGISTRY_SERVICE``             catalog service name of the registry instances          ``registry``
``UNIFY_REGISTRY_DOMAINS``             comma-separated domains; ``<service>.<domain>`` is in   (none)
                                       the certificate and gets a ``certs.d`` directory
``UNIFY_REGISTRY_EXTRA_NAMES``         more DNS names for the certificate (comma-separated)    (none)
``UNIFY_REGISTRY_STATE_DIR``           CA, key, generated secrets (0700)                       ``/var/lib/unify/registry-admin``
``UNIFY_REGISTRY_TLS_DIR``             where ``registry.crt``/``registry.key`` are written     (``<state dir>/tls``)
                                       for the registries
``UNIFY_REGISTRY_CONFIG``              path of the registry configuration registry-admin       (``<state dir>/registry.yml``)
                                       renders for every instance (0600: it holds the secret)
``UNIFY_REGISTRY_STORAGE_DIR``         the registries' shared storage                          ``/var/lib/docker-registry``
``UNIFY_REGISTRY_LISTEN_PORT``         registry port written into the rendered config          ``5000``
``UNIFY_REGISTRY_CERTS_D``             dockerd's trust directory                               ``/etc/docker/certs.d``
``UNIFY_REGISTRY_TRUST_PORTS``         extra ports to trust the CA on (e.g. a load             (none)
                                       balancer's), comma-separated
``UNIFY_REGISTRY_NOTIFY_ADDR``         ``host:port`` of the notification endpoint              ``0.0.0.0:5005``
``UNIFY_REGISTRY_NOTIFY_URL``          the URL registries post to                              ``http://registry-admin:5005/notify``
``UNIFY_REGISTRY_NOTIFY_TOKEN_FILE``   file with the notification bearer token                 (generated into the state dir)
``UNIFY_REGISTRY_HTTP_SECRET_FILE``    file with ``REGISTRY_HTTP_SECRET``                      (generated once into the state dir)
``UNIFY_REGISTRY_URL``                 registry API base URL used to resolve tags              ``https://127.0.0.1:5000``
``UNIFY_REGISTRY_CA_FILE``             CA bundle to verify ``UNIFY_REGISTRY_URL``              (the generated CA)
``UNIFY_REGISTRY_CERT_DAYS``           server certificate lifetime, days (1-825, below the     ``90``
                                       CA's)
``UNIFY_REGISTRY_CA_DAYS``             CA lifetime, days                                       ``3650``
``UNIFY_REGISTRY_RESTART``             ``none``, ``docker`` (restart the container named in    ``none``
                                       the registrator instance id) or ``command``
``UNIFY_REGISTRY_RESTART_COMMAND``     argv (JSON list) run per instance with                  (none)
                                       ``{instance_id}``, ``{node}``, ``{host}``, ``{port}``
                                       substituted (no shell)
``UNIFY_REGISTRY_RESTART_TIMEOUT``     seconds each instance may take to serve again           ``60``
``UNIFY_REGISTRY_RESOLVE_TIMEOUT``     seconds a push may take until its tag resolves          ``10``
``UNIFY_REGISTRY_BIN``                 distribution's binary for ``garbage-collect``           ``docker-registry``
                                       (Debian's name)
``UNIFY_REGISTRY_GC_TIMEOUT``          seconds one ``garbage-collect`` run may take            ``3600``
``UNIFY_REGISTRY_PROTECT_FILE``        file of ``repository@digest`` (or ``:tag``) lines that  (none)
                                       gc keeps besides running Swarm tasks' images (a hook
                                       for wireline's releases)
``UNIFY_REGISTRY_MODE``                ``manager`` (issues, restarts, notifications) or        ``manager``
                                       ``trust`` (only writes ``certs.d`` from the CA file)
``UNIFY_HEALTH_ADDR``                  ``host:port`` of ``/livez``, ``/readyz`` and            ``127.0.0.1:9105``
                                       ``/metrics`` (port 0: any free port)
=====================================  ======================================================  ==========================

An empty variable means its default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, field_validator, model_validator
from pydantic_settings import NoDecode

from unify_common.settings import CommaList, CommonSettings, EnvSettings, HostPort, env_var

from .plan import is_hostname

__all__ = ["RegistryAdminSettings", "read_secret_file"]


def _ports(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    ports = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise ValueError(f"UNIFY_REGISTRY_TRUST_PORTS: {part!r} is not a port")
        ports.append(int(part))
    return tuple(ports)


def _argv(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        parsed = None
    if not (isinstance(parsed, list) and parsed and all(isinstance(a, str) for a in parsed)):
        raise ValueError("UNIFY_REGISTRY_RESTART_COMMAND must be a JSON list of strings")
    return tuple(parsed)


def _notify_addr(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"UNIFY_REGISTRY_NOTIFY_ADDR must be host:port, got {raw!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def read_secret_file(path: Path) -> str:
    """The first line of a secret file, stripped. :raises ValueError: empty or unreadable."""
    try:
        value = path.read_text().strip().splitlines()
    except OSError as err:
        raise ValueError(f"cannot read secret file {path}: {err.strerror}") from None
    if not value or not value[0].strip():
        raise ValueError(f"secret file {path} is empty")
    return value[0].strip()


def _check_secret_file(variable: str, path: Path) -> None:
    """:raises ValueError: ``path`` (named by ``variable``) is unreadable or empty; the
    message names the variable and the path, never the content."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{variable}: cannot read {path}: {type(err).__name__}") from None
    if not text.strip():
        raise ValueError(f"{variable}: {path} is empty")


class RegistryAdminSettings(EnvSettings):
    """Everything registry-admin needs; see the module doc for the variables. The
    constructor also takes ``notify_host``/``notify_port`` for the parts of ``notify_addr``.

    :raises ValueError: a value is malformed (the message names the variable).
    """

    common: CommonSettings
    service: str = env_var("UNIFY_REGISTRY_SERVICE", "registry")
    domains: CommaList = env_var("UNIFY_REGISTRY_DOMAINS", ())
    extra_names: CommaList = env_var("UNIFY_REGISTRY_EXTRA_NAMES", ())
    state_dir: Path = env_var("UNIFY_REGISTRY_STATE_DIR", Path("/var/lib/unify/registry-admin"))
    #: ``None`` given: ``<state_dir>/tls``; always a path once built
    tls_dir: Path | None = env_var("UNIFY_REGISTRY_TLS_DIR", None)
    #: ``None`` given: ``<state_dir>/registry.yml``; always a path once built
    config_path: Path | None = env_var("UNIFY_REGISTRY_CONFIG", None)
    storage_dir: Path = env_var("UNIFY_REGISTRY_STORAGE_DIR", Path("/var/lib/docker-registry"))
    listen_port: int = env_var("UNIFY_REGISTRY_LISTEN_PORT", 5000, ge=1, le=65535)
    certs_d: Path = env_var("UNIFY_REGISTRY_CERTS_D", Path("/etc/docker/certs.d"))
    trust_ports: Annotated[tuple[int, ...], NoDecode, BeforeValidator(_ports)] = env_var(
        "UNIFY_REGISTRY_TRUST_PORTS", ())
    notify_addr: Annotated[tuple[str, int], NoDecode, BeforeValidator(_notify_addr)] = env_var(
        "UNIFY_REGISTRY_NOTIFY_ADDR", ("0.0.0.0", 5005))
    notify_url: str = env_var("UNIFY_REGISTRY_NOTIFY_URL", "http://registry-admin:5005/notify")
    notify_token_file: Path | None = env_var("UNIFY_REGISTRY_NOTIFY_TOKEN_FILE", None)
    http_secret_file: Path | None = env_var("UNIFY_REGISTRY_HTTP_SECRET_FILE", None)
    registry_url: str = env_var("UNIFY_REGISTRY_URL", "https://127.0.0.1:5000")
    ca_file: Path | None = env_var("UNIFY_REGISTRY_CA_FILE", None)
    cert_days: int = env_var("UNIFY_REGISTRY_CERT_DAYS", 90)
    ca_days: int = env_var("UNIFY_REGISTRY_CA_DAYS", 3650, ge=2, le=36500)
    restart: str = env_var("UNIFY_REGISTRY_RESTART", "none")
    restart_command: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_argv)] = env_var(
        "UNIFY_REGISTRY_RESTART_COMMAND", ())
    restart_timeout: float = env_var("UNIFY_REGISTRY_RESTART_TIMEOUT", 60.0, gt=0)
    resolve_timeout: float = env_var("UNIFY_REGISTRY_RESOLVE_TIMEOUT", 10.0, gt=0)
    mode: str = env_var("UNIFY_REGISTRY_MODE", "manager")
    registry_bin: str = env_var("UNIFY_REGISTRY_BIN", "docker-registry")
    gc_timeout: float = env_var("UNIFY_REGISTRY_GC_TIMEOUT", 3600.0, gt=0)
    protect_file: Path | None = env_var("UNIFY_REGISTRY_PROTECT_FILE", None)
    health_addr: HostPort = env_var("UNIFY_HEALTH_ADDR", ("127.0.0.1", 9105))

    @model_validator(mode="before")
    @classmethod
    def _notify_parts(cls, data: Any) -> Any:
        """``notify_host=``/``notify_port=`` from the constructor: parts of ``notify_addr``."""
        if isinstance(data, dict) and ("notify_host" in data or "notify_port" in data):
            data = dict(data)
            host, port = data.get("notify_addr") or ("0.0.0.0", 5005)
            data["notify_addr"] = (data.pop("notify_host", host), data.pop("notify_port", port))
        return data

    @field_validator("state_dir", "tls_dir", "config_path", "storage_dir", "certs_d",
                     "notify_token_file", "http_secret_file", "ca_file", "protect_file")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return None if path is None else path.absolute()

    @field_validator("registry_url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> RegistryAdminSettings:
        for name in (*(f"{self.service}.{d}" for d in self.domains), *self.extra_names):
            if not is_hostname(name):
                raise ValueError(f"UNIFY_REGISTRY_DOMAINS/EXTRA_NAMES: {name!r} is not a "
                                 "host name")
        if self.restart not in ("none", "docker", "command"):
            raise ValueError("UNIFY_REGISTRY_RESTART must be none, docker or command")
        if self.restart == "command" and not self.restart_command:
            raise ValueError("UNIFY_REGISTRY_RESTART_COMMAND must be a JSON list of strings "
                             "when UNIFY_REGISTRY_RESTART=command")
        if self.mode not in ("manager", "trust"):
            raise ValueError("UNIFY_REGISTRY_MODE must be manager or trust")
        if not 1 <= self.cert_days <= 825 or not self.cert_days < self.ca_days:
            raise ValueError("UNIFY_REGISTRY_CERT_DAYS must be 1-825 and below the CA's days")
        for variable, path in (("UNIFY_REGISTRY_NOTIFY_TOKEN_FILE", self.notify_token_file),
                               ("UNIFY_REGISTRY_HTTP_SECRET_FILE", self.http_secret_file)):
            if path is not None:  # like every *_FILE secret: refused at start, named
                _check_secret_file(variable, path)
        # frozen model: the paths derived from the state dir are set once, here
        self.__dict__.update(tls_dir=self.tls_dir_path, config_path=self.config_file)
        return self

    @property
    def tls_dir_path(self) -> Path:
        """:attr:`tls_dir`, or ``<state_dir>/tls`` when none was given (never ``None``)."""
        return self.tls_dir or self.state_dir / "tls"

    @property
    def config_file(self) -> Path:
        """:attr:`config_path`, or ``<state_dir>/registry.yml`` when none was given (never
        ``None``)."""
        return self.config_path or self.state_dir / "registry.yml"

    @property
    def notify_host(self) -> str:
        """Host part of ``notify_addr``."""
        return self.notify_addr[0]

    @property
    def notify_port(self) -> int:
        """Port part of ``notify_addr``."""
        return self.notify_addr[1]

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
