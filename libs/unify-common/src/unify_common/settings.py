"""Connection settings shared by every component, read from the environment.

Each ecosystem's own variables are used where they exist:

* Consul (as the ``consul`` CLI reads them): ``CONSUL_HTTP_ADDR`` (``host:port`` or a URL,
  default ``127.0.0.1:8500``), ``CONSUL_HTTP_TOKEN``, ``CONSUL_HTTP_SSL``, ``CONSUL_CACERT``.
* NATS (as the ``nats`` CLI reads them): ``NATS_URL`` (default ``nats://127.0.0.1:4222``;
  comma-separated for a cluster), ``NATS_CREDS``, ``NATS_USER``, ``NATS_PASSWORD``,
  ``NATS_CA``, ``NATS_CERT``, ``NATS_KEY``.
* Unify's own: ``UNIFY_STREAM`` (default ``UNIFY``), ``UNIFY_CATALOG_BUCKET`` (default
  ``unify-catalog``), ``UNIFY_NODE`` (default: the host name), ``UNIFY_LOG_FORMAT``
  (``text`` or ``json``), ``UNIFY_LOG_LEVEL`` (default ``INFO``), ``UNIFY_RESYNC`` (seconds
  between full reconciles of a subscriber while the catalog is quiet, default 300; 0: never).

Secrets (tokens, passwords) are kept out of ``repr`` so they never reach a log line. Each
secret can also come from a file, as Swarm secrets and Docker secrets are mounted:
``CONSUL_HTTP_TOKEN_FILE`` (the Consul CLI's own variable) and ``NATS_PASSWORD_FILE``; the
file's content, without its trailing newline, is the value. ``NATS_CREDS`` is a file already.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["CommonSettings", "env_float", "env_int", "env_secret"]


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    """``float(env[name])`` or ``default``. :raises ValueError: naming the variable."""
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    """``int(env[name])`` or ``default``. :raises ValueError: naming the variable."""
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _resync(env: Mapping[str, str]) -> float:
    value = env_float(env, "UNIFY_RESYNC", 300.0)
    if value < 0:
        raise ValueError(f"UNIFY_RESYNC must be 0 or more seconds, got {value:g}")
    return value


def env_secret(env: Mapping[str, str], name: str) -> str:
    """The secret ``env[name]``, or the content of the file named by ``env[name + "_FILE"]``
    (trailing newline removed) when that is set; ``""`` when neither is.

    :raises ValueError: both are set, or the file cannot be read (the message names the
        variable and the path, never the content).
    """
    path = env.get(f"{name}_FILE", "")
    if not path:
        return env.get(name, "")
    if env.get(name, ""):
        raise ValueError(f"set {name} or {name}_FILE, not both")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{name}_FILE: cannot read {path}: {type(err).__name__}") from None


@dataclass(frozen=True, kw_only=True)
class CommonSettings:
    """Where Consul and NATS are and how to authenticate; see the module doc for variables."""

    consul_addr: str = "127.0.0.1:8500"
    consul_token: str = field(default="", repr=False)
    consul_scheme: str = "http"
    consul_ca: str = ""
    nats_urls: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    nats_creds: str = ""
    nats_user: str = ""
    nats_password: str = field(default="", repr=False)
    nats_ca: str = ""
    nats_cert: str = ""
    nats_key: str = ""
    stream: str = "UNIFY"
    catalog_bucket: str = "unify-catalog"
    node: str = ""
    log_format: str = "text"
    log_level: str = "INFO"
    resync: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "CommonSettings":
        """Read the settings from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        addr = env.get("CONSUL_HTTP_ADDR", "") or "127.0.0.1:8500"
        scheme = "https" if env.get("CONSUL_HTTP_SSL", "").lower() in ("1", "true") else "http"
        if "://" in addr:
            scheme, _, addr = addr.partition("://")
        return cls(
            consul_addr=addr.rstrip("/"),
            consul_token=env_secret(env, "CONSUL_HTTP_TOKEN"),
            consul_scheme=scheme,
            consul_ca=env.get("CONSUL_CACERT", ""),
            nats_urls=tuple(u.strip() for u in (env.get("NATS_URL", "") or
                                                "nats://127.0.0.1:4222").split(",") if u.strip()),
            nats_creds=env.get("NATS_CREDS", ""),
            nats_user=env.get("NATS_USER", ""),
            nats_password=env_secret(env, "NATS_PASSWORD"),
            nats_ca=env.get("NATS_CA", ""),
            nats_cert=env.get("NATS_CERT", ""),
            nats_key=env.get("NATS_KEY", ""),
            stream=env.get("UNIFY_STREAM", "") or "UNIFY",
            catalog_bucket=env.get("UNIFY_CATALOG_BUCKET", "") or "unify-catalog",
            node=env.get("UNIFY_NODE", "") or socket.gethostname(),
            log_format=env.get("UNIFY_LOG_FORMAT", "") or "text",
            log_level=env.get("UNIFY_LOG_LEVEL", "") or "INFO",
            resync=_resync(env),
        )

    @property
    def consul_host(self) -> str:
        """Host part of ``consul_addr``."""
        return self.consul_addr.rsplit(":", 1)[0]

    @property
    def consul_port(self) -> int:
        """Port part of ``consul_addr`` (8500 when absent, 443 for https without a port)."""
        host, sep, port = self.consul_addr.rpartition(":")
        if sep and port.isdigit():
            return int(port)
        return 443 if self.consul_scheme == "https" else 8500
