"""The Unify stack as Swarm services, on the real single-node Swarm of the test engine.

``deploy/swarm/unify-stack.yml`` is deployed with ``docker stack deploy`` (ports chosen free by
the test, secrets made for the run, this node labelled as the DNS node); then an app runs as a
Swarm service labelled for registrator and is followed through HAProxy and dnsmasq while it
is scaled, updated to another image under a request loop, and removed; finally switchboard's
container is killed and replaced 20 times and the NATS server must end with as many consumers
as before. Helpers: ``swarm_support.py``.
"""

from __future__ import annotations

import collections
import os
import time
import urllib.request

import docker.errors
import pytest

from tests.fixtures.engine import docker_host
from unify_testkit import returns, wait_until

from .swarm_support import (
    SwarmStack,
    app_body_host,
    build_app_image,
    dns_answer,
    docker_cli,
    http_get,
    jetstream_consumers,
    nats_connect_reply,
    service_tasks,
)

pytestmark = pytest.mark.timeout(900)

#: the stack's services and how many tasks each runs on this one node
TASKS = {"consul": 1, "nats": 1, "consul-bridge": 2, "registrator": 1, "switchboard": 1,
         "dns411": 1}
VHOST = "shop"
#: the app's update: bounded request loop through HAProxy during `docker service update`
LOOP_MAX_REQUESTS = 50_000
LOOP_MAX_SECONDS = 120.0


@pytest.fixture(scope="module")
def swarm(docker_engine, suite_images):
    name = f"swe2e{os.urandom(3).hex()}"
    stack = SwarmStack(docker_engine, docker_host(), suite_images, name,
                       domain=f"{name}.test")
    try:
        started = time.monotonic()
        stack.deploy()
        wait_until(lambda: stack.converged(TASKS), returns, timeout=240, interval=1,
                   what="every service of the stack running and healthy")
        print(f"stack converged in {time.monotonic() - started:.1f} s")
        yield stack
    finally:
        stack.remove()


@pytest.fixture
def app(swarm):
    """``(service name, [image v1, image v2])``: the app service's name (``<stack>-app``) and
    its two images (bodies ``v1 <hostname>``, ``v2 <hostname>``); the service and the images
    are removed afterwards."""
    images = [build_app_image(swarm.client, version) for version in ("v1", "v2")]
    name = f"{swarm.name}-app"
    yield name, images
    for service in swarm.client.services.list(filters={"name": name}):
        if service.name == name:
            service.remove()
    label = f"com.docker.swarm.service.name={name}"
    wait_until(lambda: _none(swarm.client.containers.list(all=True, filters={"label": label})),
               returns, timeout=60, what="app containers removed")
    for ref in images:
        try:
            swarm.client.images.remove(ref, force=True)
        except docker.errors.ImageNotFound:
            pass


def _none(items: list) -> None:
    assert not items, items


def _ready(port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
        assert resp.status == 200


def _env(container: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in container["Config"]["Env"])


def test_stack_runs_every_service_healthy_on_its_secrets(swarm):
    client = swarm.client
    containers = swarm.converged(TASKS)
    node = client.info()["Name"]
    for port in (swarm.ports["registrator_health"], swarm.ports["switchboard_health"],
                 swarm.ports["dns411_health"], *swarm.bridge_health_ports()):
        _ready(port)

    # node identity and the bridges' health ports from Swarm's templates
    bridges = sorted((_env(client.api.inspect_container(cid))["UNIFY_NODE"],
                      _env(client.api.inspect_container(cid))["UNIFY_HEALTH_ADDR"])
                     for cid in containers["consul-bridge"])
    low, high = swarm.bridge_health_ports()
    assert bridges == [(f"{node}-bridge-1", f"127.0.0.1:{low}"),
                       (f"{node}-bridge-2", f"127.0.0.1:{high}")]
    for short in ("registrator", "switchboard", "dns411"):
        env = _env(client.api.inspect_container(containers[short][0]))
        assert env["UNIFY_NODE"] == node

    # capabilities: all dropped; HAProxy and dnsmasq keep the one to bind low ports
    caps = {short: (client.api.inspect_container(cids[0])["HostConfig"]["CapAdd"],
                    client.api.inspect_container(cids[0])["HostConfig"]["CapDrop"])
            for short, cids in containers.items()}
    bind = (["CAP_NET_BIND_SERVICE"], ["ALL"])
    assert caps == {"consul": (None, ["ALL"]), "nats": (None, ["ALL"]),
                    "consul-bridge": (None, ["ALL"]), "registrator": (None, ["ALL"]),
                    "switchboard": bind, "dns411": bind}

    # Consul enforces its ACL (default deny): anonymous reads see nothing, while registrator,
    # with the token from its secret file, registered this node's HAProxy (switchboard's
    # host-mode port) as the `haproxy` service of the domain
    anonymous = urllib.request.urlopen(
        f"http://127.0.0.1:{swarm.ports['consul']}/v1/agent/services", timeout=3).read()
    assert anonymous.strip() == b"{}"
    registered = wait_until(lambda: _haproxy_registration(swarm), returns, timeout=30,
                            what="haproxy registered")
    assert registered == ("haproxy", "127.0.0.1", swarm.ports["haproxy"],
                          [f"dns={swarm.domain}"])

    # NATS requires the password of its secret config (the services connected with theirs)
    assert nats_connect_reply(swarm.ports["nats"], "unify", swarm.nats_password) == "PONG"
    assert nats_connect_reply(swarm.ports["nats"], "unify", "wrong") == \
        "-ERR 'Authorization Violation'"

    # the secret files are mounted for the service user only, and the settings read them
    dns411 = client.containers.get(containers["dns411"][0])
    modes = dns411.exec_run(["stat", "-c", "%n %u %a", "/run/secrets/consul-token",
                             "/run/secrets/nats-password", "/run/secrets/aws-credentials"])
    assert modes.output.decode().split("\n")[:3] == [
        "/run/secrets/consul-token 10001 400", "/run/secrets/nats-password 10001 400",
        "/run/secrets/aws-credentials 10001 400"]
    key = dns411.exec_run(["/opt/unify/bin/python", "-c",
                           "import boto3; print(boto3.Session().get_credentials().access_key)"])
    assert (key.exit_code, key.output.decode().strip()) == (0, swarm.aws_key_id)
    registrator = client.containers.get(containers["registrator"][0])
    modes = registrator.exec_run(["stat", "-c", "%u %a", "/run/secrets/consul-token"])
    assert modes.output.decode().strip() == "0 400"


def _haproxy_registration(swarm: SwarmStack) -> tuple[str, str, int, list[str]]:
    services = [s for s in swarm.consul_get("/v1/agent/services").values()
                if s["Service"] == "haproxy"]
    assert len(services) == 1, services
    svc = services[0]
    return svc["Service"], svc["Address"], svc["Port"], svc["Tags"]


def _app_hosts(swarm: SwarmStack, service: str, image: str) -> dict[str, int]:
    """Container hostname -> host-mode published port of every running task of the app;
    asserts each runs ``image``."""
    out = {}
    for task in service_tasks(swarm.client, service):
        assert task["Status"]["State"] == "running", task["Status"]
        assert task["Spec"]["ContainerSpec"]["Image"].split("@")[0] == image
        container = swarm.client.api.inspect_container(
            task["Status"]["ContainerStatus"]["ContainerID"])
        out[container["Config"]["Hostname"]] = \
            task["Status"]["PortStatus"]["Ports"][0]["PublishedPort"]
    return out


def _consul_instances(swarm: SwarmStack, name: str) -> list[tuple[str, int]]:
    entries = swarm.consul_get(f"/v1/health/service/{name}?passing=true")
    return sorted((e["Service"]["Address"], e["Service"]["Port"]) for e in entries)


def _answers(swarm: SwarmStack, count: int) -> list[str]:
    host = f"{VHOST}.{swarm.domain}"
    out = []
    for _ in range(count):
        status, body = http_get(swarm.ports["haproxy"], host)
        assert status == 200, (status, body)
        out.append(body)
    return out


def test_app_service_routed_scaled_updated_and_removed(swarm, app):
    name, (v1, v2) = app
    port = swarm.ports["haproxy"]
    host = f"{VHOST}.{swarm.domain}"
    env = swarm.environment()
    docker_cli(["service", "create", "--detach", "--name", name,
                "--label", f"SERVICE_NAME={name}",
                "--label", f"SERVICE_TAGS=dns={swarm.domain},vhost={VHOST},http={port}",
                "--label", "SERVICE_CHECK_HTTP=/health",
                "--label", "SERVICE_CHECK_INTERVAL=1s", "--label", "SERVICE_CHECK_TIMEOUT=2s",
                "--publish", "mode=host,target=8000", "--stop-grace-period", "10s",
                "--update-order", "start-first", "--update-parallelism", "1",
                "--update-delay", "1s", "--update-monitor", "2s",
                "--update-failure-action", "rollback", v1], env=env)

    # one task: its hostname through HAProxy by Host header; dnsmasq answers the CNAME
    hosts = wait_until(lambda: _one_each(_app_hosts(swarm, name, v1), 1), returns, timeout=60,
                       what="app task running")
    (only,) = hosts
    assert wait_until(lambda: _answers(swarm, 1),
                      returns, timeout=60, what="routed")[0] == f"v1 {only}\n"
    records = ("NOERROR", [f"haproxy.{swarm.domain}. 30 IN A 127.0.0.1",
                           f"{host}. 30 IN CNAME haproxy.{swarm.domain}."])
    assert wait_until(lambda: _equal(dns_answer(swarm.ports["dns"], host), records), returns,
                      timeout=30, what="dns") == records

    # three tasks: three passing instances in Consul, three servers answering in turn
    docker_cli(["service", "scale", "--detach", f"{name}=3"], env=env)
    hosts = wait_until(lambda: _one_each(_app_hosts(swarm, name, v1), 3), returns, timeout=60,
                       what="3 app tasks running")
    assert wait_until(lambda: _equal(_consul_instances(swarm, name),
                                     sorted(("127.0.0.1", p) for p in hosts.values())), returns,
                      timeout=30, what="3 passing instances") == sorted(
        ("127.0.0.1", p) for p in hosts.values())
    wait_until(lambda: _equal({app_body_host(b, "v1") for b in _answers(swarm, 6)},
                              set(hosts)), returns, timeout=30, what="answers from all three")
    # round robin: 30 requests in a row, 10 for each task (again if a health check flapped
    # meanwhile on a loaded machine and took a server out for a moment)
    balanced = {hostname: 10 for hostname in hosts}
    assert wait_until(lambda: _equal(dict(collections.Counter(
        app_body_host(b, "v1") for b in _answers(swarm, 30))), balanced), returns,
        timeout=30, what="balanced answers") == balanced

    # a rolling update to v2 under a bounded request loop: not one request fails
    started = time.monotonic()
    docker_cli(["service", "update", "--detach", "--image", v2, name], env=env)
    sent, failed, served = 0, collections.Counter(), collections.Counter()
    completed_at = None
    while sent < LOOP_MAX_REQUESTS and time.monotonic() - started < LOOP_MAX_SECONDS:
        sent += 1
        try:
            status, body = http_get(port, host)
        except OSError as err:
            failed[type(err).__name__] += 1
            continue
        version = body.split(" ", 1)[0]
        if status != 200 or version not in ("v1", "v2"):
            failed[f"{status} {body[:40]!r}"] += 1
        else:
            served[version] += 1
        if sent % 100 == 0 and completed_at is None and _update_done(swarm, name, v2):
            completed_at = time.monotonic()
        if completed_at is not None and time.monotonic() - completed_at > 2:
            break
    print(f"update: {sent} requests in {time.monotonic() - started:.1f} s, served {dict(served)}")
    assert completed_at is not None, f"update not completed within {LOOP_MAX_SECONDS:g} s"
    assert dict(failed) == {}
    assert sent == served["v1"] + served["v2"] and served["v2"] > 0
    hosts = _one_each(_app_hosts(swarm, name, v2), 3)
    wait_until(lambda: _equal({app_body_host(b, "v2") for b in _answers(swarm, 9)},
                              set(hosts)), returns, timeout=30, what="v2 from every task, v1 gone")

    # removed: HAProxy closes the vhost's frontend (no other route uses the port), dnsmasq
    # answers NXDOMAIN in its local domain, Consul lists no instance
    docker_cli(["service", "rm", name], env=env)
    wait_until(lambda: _refused(port, host), returns, timeout=60, what="frontend gone")
    assert wait_until(lambda: _equal(dns_answer(swarm.ports["dns"], host), ("NXDOMAIN", [])),
                      returns, timeout=30, what="name gone") == ("NXDOMAIN", [])
    assert swarm.consul_get(f"/v1/health/service/{name}") == []


def _one_each(hosts: dict[str, int], count: int) -> dict[str, int]:
    assert len(hosts) == count, hosts
    return hosts


def _equal(actual, expected):
    assert actual == expected, actual
    return actual


def _update_done(swarm: SwarmStack, name: str, image: str) -> bool:
    state = swarm.client.api.inspect_service(name).get("UpdateStatus", {}).get("State")
    if state != "completed":
        return False
    try:
        _one_each(_app_hosts(swarm, name, image), 3)
    except AssertionError:
        return False
    return True


def _refused(port: int, host: str) -> None:
    try:
        result = http_get(port, host)
    except ConnectionRefusedError:
        return
    raise AssertionError(f"still answered: {result}")


def test_replacing_switchboard_20_times_keeps_the_consumer_count(swarm):
    """Each replacement is a new container (a new task, a new container hostname) whose
    predecessor was SIGKILLed, so nothing was cleaned up on its way out."""
    monitor = swarm.ports["nats_monitor"]
    service = swarm.service("switchboard")
    label = f"com.docker.swarm.service.name={service}"
    before, names = jetstream_consumers(monitor)
    assert before >= 1, names  # at least switchboard's own watch of the catalog bucket

    def running() -> str:
        found = swarm.client.containers.list(filters={"label": label, "status": "running"})
        assert len(found) == 1, [c.name for c in found]
        return found[0].id

    started = time.monotonic()
    current, seen = running(), set()
    for _ in range(20):
        seen.add(current)
        swarm.client.api.kill(current)

        def replaced(old: str = current) -> str:
            cid = running()
            assert cid != old
            _ready(swarm.ports["switchboard_health"])  # its watch consumer exists
            return cid

        current = wait_until(replaced, returns, timeout=60, interval=0.1,
                             what="switchboard replaced")
    seen.add(current)
    assert len(seen) == 21
    print(f"20 replacements in {time.monotonic() - started:.1f} s")

    # the killed ones' consumers are still on the server, until their inactivity expiry
    assert jetstream_consumers(monitor)[0] > before
    settled = time.monotonic()
    after = wait_until(lambda: _equal(jetstream_consumers(monitor)[0], before),
                       returns, timeout=120, interval=1, what="consumer count back to before")
    print(f"consumers back to {after} after {time.monotonic() - settled:.1f} s")
    assert after == before
    _ready(swarm.ports["switchboard_health"])
