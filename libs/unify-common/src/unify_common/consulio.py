"""Consul client construction (py-consul, asyncio flavour) from :class:`CommonSettings`."""

from __future__ import annotations

import consul.aio

from .settings import CommonSettings

__all__ = ["make_consul"]


def make_consul(settings: CommonSettings) -> consul.aio.Consul:
    """An asyncio Consul client for ``settings.consul_addr`` with the ACL token, if any.

    Blocking queries use ``index=``/``wait=`` (Consul "Blocking Queries" API page); the client
    must be closed with ``await client.http.close()``.
    """
    return consul.aio.Consul(
        host=settings.consul_host,
        port=settings.consul_port,
        scheme=settings.consul_scheme,
        token=settings.consul_token or None,
        verify=settings.consul_ca or True,
    )
