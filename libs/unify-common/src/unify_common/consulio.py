"""Consul client construction (py-consul, asyncio flavour) from :class:`CommonSettings`."""

from __future__ import annotations

import consul.aio

from .settings import CommonSettings

__all__ = ["MAX_CONNECTIONS", "make_consul"]

#: Connection pool size of the Consul client (one per concurrent blocking query).
MAX_CONNECTIONS = 100_000


def make_consul(settings: CommonSettings) -> consul.aio.Consul:
    """An asyncio Consul client for ``settings.consul_addr`` with the ACL token, if any.

    Blocking queries use ``index=``/``wait=`` (Consul "Blocking Queries" API page); the client
    must be closed with ``await client.http.close()``. Each pending blocking query holds one
    connection, so the connection pool is not capped at aiohttp's default of 100 (a capped
    pool would make every other call, such as a lock renewal, wait behind them).
    """
    return consul.aio.Consul(
        connections_limit=MAX_CONNECTIONS,
        host=settings.consul_host,
        port=settings.consul_port,
        scheme=settings.consul_scheme,
        token=settings.consul_token.get_secret_value() or None,
        verify=settings.consul_ca or True,
    )
