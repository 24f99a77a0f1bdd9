"""Fixtures for dns411's integration tests (real nats-server, dnsmasq and moto server)."""

from __future__ import annotations

import pytest
from dns411_support import route53_client

from tests.fixtures.catalog import declare_catalog_at
from unify_common.settings import CommonSettings
from unify_testkit.devstack.moto import MotoServer


@pytest.fixture
def dns_common(nats_server) -> CommonSettings:
    """Connection settings for a NATS-only test (no Consul); the stream and the catalog
    bucket are declared (as consul-bridge would: subscribers only wait for them)."""
    settings = CommonSettings(nats_urls=(nats_server.url,), node="test-node")
    declare_catalog_at(settings)
    return settings


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory):
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture
def route53(moto_server: MotoServer):
    """A client of a freshly reset moto server."""
    moto_server.reset()
    return route53_client(moto_server.endpoint_url)


@pytest.fixture
def fault_proxy(moto_server: MotoServer):
    """A fault-injecting proxy in front of a freshly reset moto server."""
    from fault_proxy import FaultProxy

    moto_server.reset()
    proxy = FaultProxy(moto_server.endpoint_url).start()
    yield proxy
    proxy.stop()
