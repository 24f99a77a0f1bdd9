"""registrator settings, read from the environment (besides the common ones of
:mod:`unify_common.settings`: ``CONSUL_HTTP_*``, ``NATS_*``, ``UNIFY_NODE``, logging).

================================  ============================================  ============
variable                          meaning                                       default
================================  ============================================  ============
``DOCKER_HOST``                   the Docker Engine (the Docker SDK reads it)   local socket
``UNIFY_REGISTRATOR_IP``          address registered for published ports        (see below)
                                  (registrator's ``-ip``)
``UNIFY_REGISTRATOR_INTERNAL``    true: register the container's address and    ``0``
                                  exposed port (registrator's ``-internal``)
``UNIFY_REGISTRATOR_TAGS``        comma-separated tags added to every service   (none)
                                  (registrator's ``-tags``)
``UNIFY_REGISTRATOR_RESYNC``      seconds between full resyncs (0: only at      ``60``
                                  start and after Docker reconnects)
``UNIFY_REGISTRATOR_RETRY``       seconds before a failed resync is retried     ``5``
``UNIFY_REGISTRATOR_NATS``        true: publish error events to NATS (never     ``1``
                                  required: registering goes on without it)
``UNIFY_HEALTH_ADDR``             ``host:port`` of /livez, /readyz, /metrics    ``127.0.0.1:9104``
================================  ============================================  ============

Without ``UNIFY_REGISTRATOR_IP`` the node address is the Swarm node address when the engine
is in a Swarm (``docker info``: ``Swarm.NodeAddr``), else the address the host name resolves
to. ``UNIFY_NODE`` (default: the host name) is the first part of every service ID and the
value of the ``unify-registrator`` meta marker. Booleans take the one dialect of
:mod:`unify_common.settings` (``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``).
"""

from __future__ import annotations

import ipaddress

from pydantic import field_validator

from unify_common.settings import CommaList, EnvSettings, HostPort, env_var

__all__ = ["RegistratorSettings"]


class RegistratorSettings(EnvSettings):
    """See the module doc for the variables; :meth:`from_env` reads them.

    :raises ValueError: a malformed value, naming the variable.
    """

    ip: str = env_var("UNIFY_REGISTRATOR_IP", "")
    internal: bool = env_var("UNIFY_REGISTRATOR_INTERNAL", False)
    force_tags: CommaList = env_var("UNIFY_REGISTRATOR_TAGS", ())
    resync: float = env_var("UNIFY_REGISTRATOR_RESYNC", 60.0)
    retry: float = env_var("UNIFY_REGISTRATOR_RETRY", 5.0)
    nats: bool = env_var("UNIFY_REGISTRATOR_NATS", True)
    health_addr: HostPort = env_var("UNIFY_HEALTH_ADDR", ("127.0.0.1", 9104))

    @field_validator("ip")
    @classmethod
    def _an_address(cls, ip: str) -> str:
        ip = ip.strip()
        if ip:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"UNIFY_REGISTRATOR_IP must be an IP address, got {ip!r}") \
                    from None
        return ip

    @field_validator("force_tags")
    @classmethod
    def _once_each(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(tags))

    @field_validator("resync")
    @classmethod
    def _resync(cls, resync: float) -> float:
        if resync < 0:
            raise ValueError(f"UNIFY_REGISTRATOR_RESYNC must be >= 0, got {resync}")
        return resync

    @field_validator("retry")
    @classmethod
    def _retry(cls, retry: float) -> float:
        if retry <= 0:
            raise ValueError(f"UNIFY_REGISTRATOR_RETRY must be > 0, got {retry}")
        return retry
