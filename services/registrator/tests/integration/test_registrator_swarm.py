"""registrator on the real single-node Swarm: a service's tasks, scaled 1 -> 3 -> 0."""

from __future__ import annotations

import asyncio

import docker
import pytest
from docker.types import EndpointSpec, ServiceMode
from registrator_support import NODE, agent_services

from registrator.rules import DIGEST, MARKER
from tests.fixtures.components import consul_call
from unify_common.settings import CommonSettings
from unify_testkit.aio import wait_until

pytestmark = pytest.mark.timeout(150)

INTERNAL = "rg-test-node-internal"


def scale(service, replicas: int) -> None:
    """``docker service scale`` (reloaded first: an update names the version it changes)."""
    service.reload()
    service.scale(replicas)


def task_ports(client: docker.DockerClient, service: str) -> dict[str, int]:
    """Running task container name -> its host-mode published port."""
    out = {}
    for container in client.containers.list(
            filters={"label": f"com.docker.swarm.service.name={service}"}):
        bindings = container.attrs["NetworkSettings"]["Ports"].get("8000/tcp") or []
        if bindings:
            out[container.name] = int(bindings[0]["HostPort"])
    return out


def task_addresses(client: docker.DockerClient, service: str) -> dict[str, str]:
    """Running task container name -> its address on its (only) network."""
    out = {}
    for container in client.containers.list(
            filters={"label": f"com.docker.swarm.service.name={service}"}):
        [network] = container.attrs["NetworkSettings"]["Networks"].values()
        out[container.name] = network["IPAddress"]
    return out


async def test_swarm_service_scaled_1_3_0(consul_http_addr, engine, made, start_registrator):
    await start_registrator()
    # a second registrator (another node name, sharing the agent) with the internal setting:
    # it registers the task addresses, and neither touches the other's services
    await start_registrator(CommonSettings(consul_addr=consul_http_addr, node=INTERNAL),
                            internal=True)
    name = made.name("svc")
    service = await asyncio.to_thread(
        made.service, "svc",
        labels={"SERVICE_NAME": name, "SERVICE_TAGS": "from-service", "SERVICE_OWNER": "team"},
        container_labels={"SERVICE_TAGS": "swarm,web"},
        endpoint_spec=EndpointSpec(ports=[{"Protocol": "tcp", "TargetPort": 8000,
                                           "PublishMode": "host"}]),
        mode=ServiceMode("replicated", replicas=1),
        stop_grace_period=1_000_000_000)

    async def registered() -> dict[str, tuple]:
        services = await agent_services(consul_http_addr, made.prefix)
        return {sid: (svc["Service"], svc["Address"], svc["Port"], svc["Tags"],
                      {k: v for k, v in svc["Meta"].items() if k != DIGEST})
                for sid, svc in services.items()}

    def expected(ports: dict[str, int]) -> dict[str, tuple]:
        return {f"{NODE}:{task}:8000": (name, "127.0.0.1", port, ["swarm", "web"],
                                        {MARKER: NODE, "owner": "team"})
                for task, port in ports.items()}

    async def internal() -> dict[str, tuple]:
        services = await asyncio.to_thread(consul_call, consul_http_addr, "GET",
                                           "/v1/agent/services")
        return {sid: (svc["Service"], svc["Address"], svc["Port"], svc["Meta"][MARKER])
                for sid, svc in services.items() if sid.startswith(f"{INTERNAL}:{made.prefix}")}

    for replicas in (1, 3):
        if replicas != 1:
            await asyncio.to_thread(scale, service, replicas)
        ports = await wait_until(lambda: asyncio.to_thread(task_ports, engine, name),
                                 lambda p, want=replicas: len(p) == want, timeout=60, interval=0.3)
        assert len(set(ports.values())) == replicas
        want_registered = expected(ports)
        await wait_until(registered, lambda got, want=want_registered: got == want, timeout=30)
        addresses = await asyncio.to_thread(task_addresses, engine, name)
        want = {f"{INTERNAL}:{task}:8000": (name, address, 8000, INTERNAL)
                for task, address in addresses.items()}
        await wait_until(internal, lambda got, want=want: got == want)

    await asyncio.to_thread(scale, service, 0)
    await wait_until(registered, lambda got: got == {}, timeout=60)
    await wait_until(internal, lambda got: got == {})
    assert await asyncio.to_thread(task_ports, engine, name) == {}
