"""registrator settings, read from the environment (besides the common ones of
:mod:`unify_common.settings`: ``CONSUL_HTTP_*``, ``NATS_*``, ``UNIFY_NODE``, logging).

================================  ============================================  ============
variable                          meaning                                       default
================================  ============================================  ============
``DOCKER_HOST``                   the Docker Engine (the Docker SDK reads it)   local socket
``UNIFY_REGISTRATOR_IP``          address registered for published ports        (see below)
                                  (registrator's ``-ip``)
``UNIFY_REGISTRATOR_INTERNAL``    ``1``: register the container's address and   ``0``
                                  exposed port (registrator's ``-internal``)
``UNIFY_REGISTRATOR_TAGS``        comma-separated tags added to every service   (none)
                                  (registrator's ``-tags``)
``UNIFY_REGISTRATOR_RESYNC``      seconds between full resyncs (0: only at      ``60``
                                  start and after Docker reconnects)
``UNIFY_REGISTRATOR_RETRY``       seconds before a failed resync is retried     ``5``
``UNIFY_REGISTRATOR_NATS``        ``1``: publish error events to NATS (never    ``1``
                                  required: registering goes on without it)
``UNIFY_HEALTH_ADDR``             ``host:port`` of /livez, /readyz, /metrics    ``127.0.0.1:9104``
================================  ============================================  ============

Without ``UNIFY_REGISTRATOR_IP`` the node address is the Swarm node address when the engine
is in a Swarm (``docker info``: ``Swarm.NodeAddr``), else the address the host name resolves
to. ``UNIFY_NODE`` (default: the host name) is the first part of every service ID and the
value of the ``unify-registrator`` meta marker.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Mapping

from unify_common.settings import env_float

__all__ = ["RegistratorSettings"]

_BOOL = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": None}


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in _BOOL:
        raise ValueError(f"{name} must be 1 or 0, got {raw!r}")
    value = _BOOL[raw]
    return default if value is None else value


@dataclass(frozen=True, kw_only=True)
class RegistratorSettings:
    """See the module doc for the variables."""

    ip: str = ""
    internal: bool = False
    force_tags: tuple[str, ...] = ()
    resync: float = 60.0
    retry: float = 5.0
    nats: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "RegistratorSettings":
        """Read the settings from ``env`` (default ``os.environ``).

        :raises ValueError: a malformed value, naming the variable.
        """
        env = os.environ if env is None else env
        ip = env.get("UNIFY_REGISTRATOR_IP", "").strip()
        if ip:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"UNIFY_REGISTRATOR_IP must be an IP address, got {ip!r}") \
                    from None
        resync = env_float(env, "UNIFY_REGISTRATOR_RESYNC", 60.0)
        retry = env_float(env, "UNIFY_REGISTRATOR_RETRY", 5.0)
        if resync < 0:
            raise ValueError(f"UNIFY_REGISTRATOR_RESYNC must be >= 0, got {resync}")
        if retry <= 0:
            raise ValueError(f"UNIFY_REGISTRATOR_RETRY must be > 0, got {retry}")
        tags = tuple(dict.fromkeys(
            t.strip() for t in env.get("UNIFY_REGISTRATOR_TAGS", "").split(",") if t.strip()))
        return cls(ip=ip, internal=_env_bool(env, "UNIFY_REGISTRATOR_INTERNAL", False),
                   force_tags=tags, resync=resync, retry=retry,
                   nats=_env_bool(env, "UNIFY_REGISTRATOR_NATS", True))
