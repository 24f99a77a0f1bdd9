"""Helpers of registrator's integration tests (imported by conftest and the tests)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import docker

from registrator.service import Registrator
from tests.fixtures.components import consul_call
from tests.fixtures.engine import docker_host
from unify_testkit import NotReached, wait_until

IMAGE = "unify-local/rg-test-http:1"
NODE = "rg-test-node"
IMAGE_DIR = Path(__file__).parent / "image"
def docker_factory() -> docker.DockerClient:
    """How the registrator under test reaches the engine."""
    return docker.DockerClient(base_url=docker_host(), timeout=30)


class Made:
    """Containers and Swarm services a test made (removed at teardown)."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.prefix = f"rg-test-{uuid.uuid4().hex[:6]}"
        self.containers: list[str] = []
        self.services: list[str] = []

    def name(self, part: str) -> str:
        return f"{self.prefix}-{part}"

    def run(self, part: str, **kwargs: Any):
        name = self.name(part)
        self.containers.append(name)
        return self.client.containers.run(IMAGE, name=name, detach=True, **kwargs)

    def service(self, part: str, **kwargs: Any):
        name = self.name(part)
        self.services.append(name)
        return self.client.services.create(IMAGE, name=name, **kwargs)

    def cleanup(self) -> None:
        for name in self.services:
            try:
                self.client.services.get(name).remove()
            except docker.errors.NotFound:
                pass
        for name in self.containers:
            try:
                self.client.containers.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass
        if not self.services:
            return

        def task_containers() -> list[str]:
            left = self.client.containers.list(
                all=True, filters={"label": "com.docker.swarm.service.name"})
            return [c.name for c in left if c.name.startswith(self.prefix)]

        try:  # a removed service's task containers go shortly
            wait_until(task_containers, lambda names: names == [], timeout=30, interval=0.2,
                       what=f"the task containers of {self.prefix}-* gone")
        except NotReached:
            pass  # best effort: anything left is named with this test's prefix


def host_port(container, port: str = "8000/tcp") -> int:
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"][port][0]["HostPort"])


async def agent_services(addr: str, prefix: str) -> dict[str, dict]:
    """Agent services whose ID starts with ``<NODE>:<prefix>`` (this test's containers)."""
    services = await asyncio.to_thread(consul_call, addr, "GET", "/v1/agent/services")
    return {sid: svc for sid, svc in (services or {}).items()
            if sid.startswith(f"{NODE}:{prefix}")}


class Running:
    """A registrator running in this event loop."""

    def __init__(self, registrator: Registrator) -> None:
        self.registrator = registrator
        self.task = asyncio.create_task(registrator.run())

    async def stop(self) -> None:
        self.registrator.stop()
        await asyncio.wait_for(self.task, 15)


async def resyncs(runner: Running) -> int:
    if runner.task.done():
        runner.task.result()  # raise what stopped it
    return runner.registrator.resyncs


