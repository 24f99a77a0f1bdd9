"""Fixtures for wireline's integration tests: one registry (Debian ``docker-registry``) for
the session (the base image's layers are uploaded once), per module one nats-server and one
wireline service with its sshd; the test stacks (``wl-test-<app>``) are removed afterwards."""

from __future__ import annotations

import pytest
from wireline_support import Registry, remove_images, remove_stacks, start_wireline

from unify_testkit.devstack.nats import NatsServer


@pytest.fixture(scope="module")
def wl_nats(tmp_path_factory: pytest.TempPathFactory):
    server = NatsServer(tmp_path_factory.mktemp("wl-nats")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def wl_registry(tmp_path_factory: pytest.TempPathFactory):
    registry = Registry(tmp_path_factory.mktemp("wl-registry")).start()
    yield registry
    registry.stop()
    remove_images(f"{registry.addr}/")


@pytest.fixture(scope="module")
def wireline(request, tmp_path_factory: pytest.TempPathFactory, wl_nats, wl_registry):
    """The service, with the test module's ``WIRELINE_ENV`` (a dict) added to its settings."""
    service = start_wireline(tmp_path_factory.mktemp("wl"), nats_url=wl_nats.url,
                             registry=wl_registry.addr,
                             extra=getattr(request.module, "WIRELINE_ENV", None))
    yield service
    try:
        remove_stacks(sorted(service.apps))
    finally:
        service.process.stop()
