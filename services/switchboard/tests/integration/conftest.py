"""Real components for switchboard's integration tests: nats-server (from the shared fixture
layer), HAProxy master-worker, tiny HTTP backends, and a running switchboard."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import nats
import pytest
from sb_backends import NamedBackend
from sb_support import Events

from switchboard.render import RenderOptions
from switchboard.service import SwitchboardService
from switchboard.settings import SwitchboardSettings
from tests.fixtures.catalog import declare_catalog_at
from unify_common.settings import CommonSettings
from unify_testkit.devstack.haproxy import HAProxyServer


@pytest.fixture
def sb_common(nats_server) -> CommonSettings:
    """Settings for this test's nats-server, whose stream and catalog bucket are declared
    (as consul-bridge would: subscribers only wait for them)."""
    settings = CommonSettings(nats_urls=(nats_server.url,), node="test-node")
    declare_catalog_at(settings)
    return settings


@pytest.fixture
def run_dir():
    # UNIX socket paths are limited to 107 bytes: keep HAProxy's directory short.
    path = Path(tempfile.mkdtemp(prefix="sb-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def haproxy(run_dir: Path):
    server = HAProxyServer(run_dir, config=run_dir / "haproxy.cfg").start()
    yield server
    server.stop()


@pytest.fixture
def backends():
    made: list[NamedBackend] = []

    def make(name: str, tls=None) -> NamedBackend:
        backend = NamedBackend(name, tls)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
async def nc(sb_common: CommonSettings):
    client = await nats.connect(list(sb_common.nats_urls))
    yield client
    await client.close()


@pytest.fixture
async def events(nc) -> Events:
    seen = Events()
    await nc.subscribe("unify.error.>", cb=seen.handle)
    await nc.subscribe("unify.applied.>", cb=seen.handle)
    await nc.flush()
    return seen


@pytest.fixture
async def switchboard_factory(sb_common: CommonSettings, run_dir: Path):
    started: list[SwitchboardService] = []

    async def start(*, cert_dir: Path | None = None, ssl_ciphers: str = "",
                    manage: bool = False, min_slots: int = 4, host_maps: bool = True,
                    spare_backends: int = 2, debounce: float = 0.05,
                    max_wait: float = 1.0) -> SwitchboardService:
        sb_settings = SwitchboardSettings(
            common=sb_common, config_path=run_dir / "haproxy.cfg",
            master_socket=run_dir / "master.sock", haproxy_bin="haproxy", cert_dir=cert_dir,
            manage=manage, min_slots=min_slots, spare_backends=spare_backends,
            debounce=debounce, max_wait=max_wait,
            render=RenderOptions(bind="127.0.0.1", run_dir=str(run_dir), maxconn=2000,
                                 hard_stop_after="10s", ssl_ciphers=ssl_ciphers,
                                 host_maps=host_maps))
        service = SwitchboardService(sb_settings)
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        try:
            await asyncio.wait_for(service.stop(), 20)
        except TimeoutError:
            for task in asyncio.all_tasks():
                task.print_stack(file=sys.stderr)
            raise AssertionError("switchboard did not stop within 20 s") from None
