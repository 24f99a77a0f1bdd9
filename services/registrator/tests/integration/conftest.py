"""Fixtures of registrator's tests on the real Docker Engine (``DOCKER_HOST``, else the one
``scripts/setup-engine.sh`` wrote to ``.unify/engine.env``) and a real Consul agent.

Everything created is named ``rg-test-<run id>-...`` and removed afterwards; the engine is
shared with other tests, so assertions only look at these names.
"""

from __future__ import annotations

from typing import Any

import docker
import pytest
from registrator_support import (
    IMAGE,
    IMAGE_DIR,
    NODE,
    Made,
    Running,
    docker_factory,
    docker_host,
    resyncs,
)

from registrator.service import Registrator
from registrator.settings import RegistratorSettings
from unify_common.settings import CommonSettings
from unify_testkit.aio import wait_until


@pytest.fixture(scope="session")
def engine():
    """A Docker client and the test image (built from the local base; cached by the engine)."""
    client = docker.DockerClient(base_url=docker_host(), timeout=60)
    client.images.build(path=str(IMAGE_DIR), tag=IMAGE, rm=True)
    yield client
    client.close()


@pytest.fixture
def made(engine):
    things = Made(engine)
    yield things
    things.cleanup()


@pytest.fixture
async def start_registrator(consul_http_addr, engine):
    """``await start(common=None, **settings)`` runs a registrator; all stop at teardown."""
    running: list[Running] = []

    async def start(common: CommonSettings | None = None, *, health: bool = False,
                    **settings: Any) -> Running:
        common = common or CommonSettings(consul_addr=consul_http_addr, node=NODE)
        settings.setdefault("nats", False)
        registrator = Registrator(RegistratorSettings(**settings), common,
                                  health_addr=("127.0.0.1", 0) if health else None,
                                  docker_factory=docker_factory)
        runner = Running(registrator)
        running.append(runner)
        await wait_until(lambda: resyncs(runner), lambda n: n >= 1)
        return runner

    yield start
    for runner in running:
        if not runner.task.done():
            await runner.stop()


