"""consul-bridge settings (environment variables, on top of :class:`CommonSettings`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from unify_common.health import health_addr
from unify_common.settings import CommonSettings, env_float, env_int

__all__ = ["BridgeSettings"]


@dataclass(frozen=True, kw_only=True)
class BridgeSettings:
    """Settings of one bridge.

    ``kv_prefixes``: Consul KV prefixes to watch (``UNIFY_BRIDGE_KV_PREFIXES``, comma-separated,
    default ``unify/``). ``lock_key``: the Consul key of the leader lock
    (``UNIFY_BRIDGE_LOCK_KEY``, default ``unify-locks/consul-bridge``, outside watched
    prefixes). ``lock_ttl_s``: session TTL in seconds (``UNIFY_BRIDGE_LOCK_TTL``, default 10,
    Consul allows 10-86400). ``wait_s``: blocking-query wait in seconds (``UNIFY_BRIDGE_WAIT``,
    default 240: every query that times out is asked again, so with one query per service a
    short wait costs idle CPU in proportion to the number of services; Consul adds up to
    wait/16 and the HTTP client gives up after 300 s, so keep it below 280).
    ``max_instance_bytes``: an instance whose JSON is larger is skipped with an error event
    (``UNIFY_BRIDGE_MAX_INSTANCE_BYTES``, default 65536; NATS refuses messages above its
    ``max_payload``, 1 MiB by default). ``ignore_services``: services never published
    (``UNIFY_BRIDGE_IGNORE_SERVICES``, comma-separated, default ``consul``, the servers' own
    entry). ``removal_confirm_s``: how long a suspicious mass removal must persist
    (``UNIFY_BRIDGE_REMOVAL_CONFIRM``, default 10). ``removal_ratio``: share of instances one
    observation may remove without suspicion (``UNIFY_BRIDGE_REMOVAL_RATIO``, default 0.5).
    ``health_addr``: where ``/livez``, ``/readyz`` and ``/metrics`` listen
    (``UNIFY_HEALTH_ADDR``, ``host:port``, default ``127.0.0.1:9101``; port 0: any free one).
    """

    common: CommonSettings
    kv_prefixes: tuple[str, ...] = ("unify/",)
    lock_key: str = "unify-locks/consul-bridge"
    lock_ttl_s: float = 10.0
    wait_s: float = 240.0
    ignore_services: frozenset[str] = frozenset({"consul"})
    max_instance_bytes: int = 65536
    removal_confirm_s: float = 10.0
    removal_ratio: float = 0.5
    health_addr: tuple[str, int] = ("127.0.0.1", 9101)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "BridgeSettings":
        """Read from ``env`` (default ``os.environ``).

        :raises ValueError: a bad number, or ``UNIFY_BRIDGE_WAIT`` outside 1-280 seconds.
        """
        env = os.environ if env is None else env
        prefixes = env.get("UNIFY_BRIDGE_KV_PREFIXES", "unify/")
        wait_s = env_float(env, "UNIFY_BRIDGE_WAIT", 240.0)
        if not 1 <= wait_s <= 280:
            raise ValueError(f"UNIFY_BRIDGE_WAIT must be 1-280 seconds, got {wait_s:g}")
        return cls(
            common=CommonSettings.from_env(env),
            kv_prefixes=tuple(p.strip() for p in prefixes.split(",") if p.strip()),
            lock_key=env.get("UNIFY_BRIDGE_LOCK_KEY", "") or "unify-locks/consul-bridge",
            lock_ttl_s=env_float(env, "UNIFY_BRIDGE_LOCK_TTL", 10.0),
            wait_s=wait_s,
            ignore_services=frozenset(
                n.strip() for n in env.get("UNIFY_BRIDGE_IGNORE_SERVICES", "consul").split(",")
                if n.strip()),
            removal_confirm_s=env_float(env, "UNIFY_BRIDGE_REMOVAL_CONFIRM", 10.0),
            removal_ratio=env_float(env, "UNIFY_BRIDGE_REMOVAL_RATIO", 0.5),
            max_instance_bytes=env_int(env, "UNIFY_BRIDGE_MAX_INSTANCE_BYTES", 65536),
            health_addr=health_addr(default_port=9101, env=env),
        )
