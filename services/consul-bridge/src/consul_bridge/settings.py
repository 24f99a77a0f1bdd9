"""consul-bridge settings (environment variables, on top of :class:`CommonSettings`).

==================================  ==============================================  ===============================
variable                            meaning                                         default
==================================  ==============================================  ===============================
``UNIFY_BRIDGE_KV_PREFIXES``        Consul KV prefixes to watch, comma-separated    ``unify/``
``UNIFY_BRIDGE_LOCK_KEY``           Consul key of the leader lock (outside the      ``unify-locks/consul-bridge``
                                    watched prefixes)
``UNIFY_BRIDGE_LOCK_TTL``           session TTL, seconds (Consul allows 10-86400)   ``10``
``UNIFY_BRIDGE_WAIT``               blocking-query wait, seconds (1-280)            ``240``
``UNIFY_BRIDGE_IGNORE_SERVICES``    services never published, comma-separated       ``consul``
                                    (``consul``: the servers' own entry)
``UNIFY_BRIDGE_MAX_INSTANCE_BYTES`` an instance whose JSON is larger is skipped     ``65536``
                                    with an error event
``UNIFY_BRIDGE_REMOVAL_CONFIRM``    seconds a suspicious mass removal must persist  ``10``
``UNIFY_BRIDGE_REMOVAL_RATIO``      share of instances one observation may remove   ``0.5``
                                    without suspicion
``UNIFY_HEALTH_ADDR``               ``host:port`` of ``/livez``, ``/readyz`` and      ``127.0.0.1:9101``
                                    ``/metrics`` (port 0: any free one)
==================================  ==============================================  ===============================

The wait: every query that times out is asked again, so with one query per service a short
wait costs idle CPU in proportion to the number of services; Consul adds up to wait/16 and
the HTTP client gives up after 300 s, hence at most 280. NATS refuses messages above its
``max_payload`` (1 MiB by default), hence the instance size cap. An empty variable means its
default.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, field_validator
from pydantic_settings import NoDecode

from unify_common.settings import CommaList, CommonSettings, EnvSettings, HostPort, env_var

__all__ = ["BridgeSettings"]


def _names(raw: object) -> object:
    if isinstance(raw, str):
        return frozenset(name.strip() for name in raw.split(",") if name.strip())
    return raw


class BridgeSettings(EnvSettings):
    """Settings of one bridge; see the module doc for the variables (field names in the
    constructor: ``kv_prefixes``, ``lock_key``, ``lock_ttl_s``, ``wait_s``,
    ``ignore_services``, ``max_instance_bytes``, ``removal_confirm_s``, ``removal_ratio``,
    ``health_addr``; ``common`` is read from the same environment by :meth:`from_env`).

    :raises ValueError: a bad number, or ``UNIFY_BRIDGE_WAIT`` outside 1-280 seconds.
    """

    common: CommonSettings
    kv_prefixes: CommaList = env_var("UNIFY_BRIDGE_KV_PREFIXES", ("unify/",))
    lock_key: str = env_var("UNIFY_BRIDGE_LOCK_KEY", "unify-locks/consul-bridge")
    lock_ttl_s: float = env_var("UNIFY_BRIDGE_LOCK_TTL", 10.0, ge=10, le=86400)
    wait_s: float = env_var("UNIFY_BRIDGE_WAIT", 240.0)
    ignore_services: Annotated[frozenset[str], NoDecode, BeforeValidator(_names)] = env_var(
        "UNIFY_BRIDGE_IGNORE_SERVICES", frozenset({"consul"}))
    max_instance_bytes: int = env_var("UNIFY_BRIDGE_MAX_INSTANCE_BYTES", 65536, ge=1,
                                         le=1048576)  # NATS's default max payload
    removal_confirm_s: float = env_var("UNIFY_BRIDGE_REMOVAL_CONFIRM", 10.0, ge=0)
    removal_ratio: float = env_var("UNIFY_BRIDGE_REMOVAL_RATIO", 0.5, ge=0, le=1)
    health_addr: HostPort = env_var("UNIFY_HEALTH_ADDR", ("127.0.0.1", 9101))

    @field_validator("wait_s")
    @classmethod
    def _wait(cls, wait_s: float) -> float:
        if not 1 <= wait_s <= 280:
            raise ValueError(f"UNIFY_BRIDGE_WAIT must be 1-280 seconds, got {wait_s:g}")
        return wait_s
