"""registrator on the real Docker Engine and a real Consul agent: plain containers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request

import nats
import pytest
from registrator_support import NODE, agent_services, docker_host, host_port

from registrator.rules import DIGEST, MARKER
from tests.fixtures.catalog import declare_catalog
from tests.fixtures.components import consul_call
from unify_common.events import ErrorEvent, decode_event
from unify_common.settings import CommonSettings
from unify_testkit.aio import wait_until
from unify_testkit.devstack.nats import NatsServer

pytestmark = pytest.mark.timeout(120)


def _body(svc: dict) -> dict:
    """The parts of an agent service entry the tests compare (the digest is checked apart)."""
    meta = dict(svc["Meta"])
    assert len(meta.pop(DIGEST)) == 16
    return {"ID": svc["ID"], "Service": svc["Service"], "Address": svc["Address"],
            "Port": svc["Port"], "Tags": svc["Tags"], "Meta": meta}


async def test_container_registered_exactly_then_stop_deregisters(
        consul_http_addr, made, start_registrator):
    runner = await start_registrator(health=True)
    web = await asyncio.to_thread(
        made.run, "web", ports={"8000/tcp": None, "9000/udp": None},
        environment={"SERVICE_TAGS": "from-env", "SERVICE_TIER": "env",
                     "SERVICE_8000_NAME": "env-name"},
        labels={"SERVICE_8000_NAME": made.name("api"), "SERVICE_TAGS": "a,b",
                "SERVICE_8000_TAGS": "http", "SERVICE_8000_CHECK_HTTP": "/",
                "SERVICE_CHECK_INTERVAL": "1s", "SERVICE_REGION": "eu"})
    tcp_port = await asyncio.to_thread(host_port, web)
    udp_port = await asyncio.to_thread(host_port, web, "9000/udp")
    services = await wait_until(lambda: agent_services(consul_http_addr, made.prefix),
                                lambda s: len(s) == 2)
    meta = {MARKER: NODE, "region": "eu", "tier": "env"}
    assert sorted((_body(svc) for svc in services.values()), key=lambda b: b["ID"]) == [
        {"ID": f"{NODE}:{web.name}:8000", "Service": made.name("api"), "Address": "127.0.0.1",
         "Port": tcp_port, "Tags": ["http"], "Meta": meta},
        {"ID": f"{NODE}:{web.name}:9000:udp", "Service": "rg-test-http-9000",
         "Address": "127.0.0.1", "Port": udp_port, "Tags": ["a", "b", "udp"], "Meta": meta},
    ]
    # the HTTP check goes to the registered address and port, and the real server passes it
    checks = await wait_until(
        lambda: asyncio.to_thread(consul_call, consul_http_addr, "GET", "/v1/agent/checks"),
        lambda c: any(ch["ServiceID"] == f"{NODE}:{web.name}:8000"
                      and ch["Status"] == "passing" for ch in c.values()))
    [check] = [ch for ch in checks.values() if ch["ServiceID"] == f"{NODE}:{web.name}:8000"]
    assert (check["Type"], check["Interval"], check["Output"].split(" Output:")[0]) == (
        "http", "1s", f"HTTP GET http://127.0.0.1:{tcp_port}/: 200 OK")
    assert not [ch for ch in checks.values() if ch["ServiceID"].endswith(":9000:udp")]

    host, port = runner.registrator.health.bound

    def ready() -> tuple[int, str]:
        with urllib.request.urlopen(f"http://{host}:{port}/readyz?verbose", timeout=5) as resp:
            return resp.status, resp.read().decode()

    assert await asyncio.to_thread(ready) == (
        200, "[+]docker ok\n[+]consul ok\n[+]last-success ok\nreadyz check passed\n")

    def get(path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()

    assert await asyncio.to_thread(get, "/livez") == (200, "ok\n")
    status, metrics = await asyncio.to_thread(get, "/metrics")
    lines = metrics.splitlines()
    assert status == 200
    assert 'unify_registrator_build_info{revision="unknown",version="0.1.0"} 1.0' in lines
    # no resync failed and nothing was rejected
    assert [line for line in lines if line.startswith("unify_registrator_errors_total")] == []
    [resyncs] = [line for line in lines
                 if line.startswith("unify_registrator_reconcile_duration_seconds_count ")]
    assert float(resyncs.split()[1]) >= 1.0

    await asyncio.to_thread(web.stop, timeout=5)
    await wait_until(lambda: agent_services(consul_http_addr, made.prefix), lambda s: s == {})


async def test_removed_while_down_deregistered_at_start_others_untouched(
        consul_http_addr, made):
    """Through the real entry point: `python -m registrator`, stopped with SIGTERM."""
    foreign = [
        {"ID": f"{NODE}:{made.prefix}-foreign:80", "Name": "foreign", "Port": 80},
        {"ID": f"{NODE}:{made.prefix}-other-node:80", "Name": "foreign", "Port": 81,
         "Meta": {MARKER: "another-node"}},
    ]
    for body in foreign:
        await asyncio.to_thread(consul_call, consul_http_addr, "PUT",
                                "/v1/agent/service/register", body)
    env = {**os.environ, "DOCKER_HOST": docker_host(), "CONSUL_HTTP_ADDR": consul_http_addr,
           "UNIFY_NODE": NODE, "UNIFY_REGISTRATOR_NATS": "0",
           "UNIFY_HEALTH_ADDR": "127.0.0.1:0", "UNIFY_REGISTRATOR_IP": "192.0.2.10"}

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "registrator"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def stop(process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 15)
        assert process.returncode == 0, process.stderr.read().decode()[-2000:]

    keep = await asyncio.to_thread(made.run, "keep", ports={"8000/tcp": None})
    gone = await asyncio.to_thread(made.run, "gone", ports={"8000/tcp": None})
    process = start()
    try:
        services = await wait_until(lambda: agent_services(consul_http_addr, made.prefix),
                                    lambda s: len(s) == 4)
    finally:
        await stop(process)
    assert {sid: (svc["Address"], svc["Port"]) for sid, svc in services.items()} == {
        f"{NODE}:{keep.name}:8000": ("192.0.2.10", await asyncio.to_thread(host_port, keep)),
        f"{NODE}:{gone.name}:8000": ("192.0.2.10", await asyncio.to_thread(host_port, gone)),
        f"{NODE}:{made.prefix}-foreign:80": ("", 80),
        f"{NODE}:{made.prefix}-other-node:80": ("", 81),
    }
    await asyncio.to_thread(gone.remove, force=True)   # while registrator is down
    process = start()
    try:
        services = await wait_until(lambda: agent_services(consul_http_addr, made.prefix),
                                    lambda s: len(s) == 3)
    finally:
        await stop(process)
    assert sorted(services) == sorted([f"{NODE}:{keep.name}:8000",
                                       f"{NODE}:{made.prefix}-foreign:80",
                                       f"{NODE}:{made.prefix}-other-node:80"])
    assert {svc["Service"] for sid, svc in services.items() if "foreign" in sid
            or "other-node" in sid} == {"foreign"}


async def test_malformed_label_skips_that_container_with_an_error_event(
        consul_http_addr, nats_server, made, start_registrator):
    nc = await nats.connect(nats_server.url)
    events: list[ErrorEvent] = []

    async def collect(msg) -> None:
        event = decode_event(msg.data)
        if made.prefix in event.message:
            events.append(event)

    await nc.subscribe("unify.error.registrator", cb=collect)
    await declare_catalog(nc.jetstream(), CommonSettings())  # as consul-bridge does
    try:
        bad = await asyncio.to_thread(made.run, "bad", ports={"8000/tcp": None},
                                      labels={"SERVICE_CHECK_INTERVAL": "often",
                                              "SERVICE_CHECK_HTTP": "/"})
        good = await asyncio.to_thread(made.run, "good", ports={"8000/tcp": None})
        common = CommonSettings(consul_addr=consul_http_addr, nats_urls=(nats_server.url,),
                                node=NODE)
        runner = await start_registrator(common, nats=True)
        services = await wait_until(lambda: agent_services(consul_http_addr, made.prefix),
                                    lambda s: len(s) == 1)
        assert list(services) == [f"{NODE}:{good.name}:8000"]
        await wait_until(lambda: _value(events), lambda e: len(e) == 1)
        assert events[0] == ErrorEvent(
            source="registrator", reason="invalid-metadata",
            message=f"container {bad.name}: SERVICE_CHECK_INTERVAL='often' is not a duration "
                    "such as 10s or 1m30s",
            instance_id=f"{NODE}:{bad.name}", node=NODE,
            observed_at=events[0].observed_at)
        # later resyncs neither register it nor repeat the event
        before = runner.registrator.resyncs
        await runner.registrator.resync()
        assert runner.registrator.resyncs == before + 1
        await nc.flush()
        assert len(events) == 1
        assert list(await agent_services(consul_http_addr, made.prefix)) == [
            f"{NODE}:{good.name}:8000"]
    finally:
        await nc.close()


async def _value(value):
    return value


def test_once_cli(consul_http_addr, made):
    """`unify-registrator --once`: one resync, exit 0; bad settings exit 2."""
    made.run("once", ports={"8000/tcp": None})
    env = {**os.environ, "DOCKER_HOST": docker_host(), "CONSUL_HTTP_ADDR": consul_http_addr,
           "UNIFY_NODE": NODE}
    done = subprocess.run([sys.executable, "-m", "registrator", "--once"], env=env,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    services = consul_call(consul_http_addr, "GET", "/v1/agent/services")
    assert [sid for sid in services if made.prefix in sid] == [
        f"{NODE}:{made.name('once')}:8000"]
    bad = subprocess.run([sys.executable, "-m", "registrator"], capture_output=True, timeout=60,
                         env={**env, "UNIFY_REGISTRATOR_RESYNC": "often"})
    assert (bad.returncode, bad.stderr.decode()) == (
        2, "registrator: UNIFY_REGISTRATOR_RESYNC must be a number, got 'often'\n")


async def test_internal_registers_the_container_address_and_exposed_port(
        consul_http_addr, made, start_registrator):
    await start_registrator(internal=True)
    web = await asyncio.to_thread(made.run, "internal", ports={"8000/tcp": None})
    await asyncio.to_thread(web.reload)
    address = web.attrs["NetworkSettings"]["IPAddress"]
    services = await wait_until(lambda: agent_services(consul_http_addr, made.prefix),
                                lambda s: len(s) == 1)
    assert {sid: (svc["Service"], svc["Address"], svc["Port"])
            for sid, svc in services.items()} == {
        f"{NODE}:{web.name}:8000": ("rg-test-http", address, 8000)}


async def test_nats_down_registers_anyway_and_publishes_when_it_is_back(
        consul_http_addr, tmp_path, made, start_registrator):
    server = NatsServer(tmp_path / "nats")  # its port is chosen, nothing listens yet
    bad = await asyncio.to_thread(made.run, "bad", ports={"8000/tcp": None},
                                  labels={"SERVICE_8o_NAME": "x"})
    good = await asyncio.to_thread(made.run, "good", ports={"8000/tcp": None})
    common = CommonSettings(consul_addr=consul_http_addr, nats_urls=(server.url,), node=NODE)
    await start_registrator(common, nats=True, retry=0.3)
    services = await wait_until(lambda: agent_services(consul_http_addr, made.prefix),
                                lambda s: len(s) == 1)
    assert list(services) == [f"{NODE}:{good.name}:8000"]
    await asyncio.to_thread(server.start)
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await declare_catalog(js, common)  # consul-bridge declares the stream, later

        async def mine() -> list[ErrorEvent]:
            try:
                info = await js.stream_info("UNIFY")
            except Exception:  # not declared yet
                return []
            found = []
            if not info.state.messages:
                return found
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                event = decode_event((await js.get_msg("UNIFY", seq)).data)
                if made.prefix in event.message:
                    found.append(event)
            return found

        events = await wait_until(mine, lambda e: len(e) == 1, timeout=30)
        assert (events[0].reason, events[0].message) == (
            "invalid-port", f"container {bad.name}: SERVICE_8o_NAME: port '8o' is not a "
                            "number in 1..65535")
        await nc.close()
    finally:
        await asyncio.to_thread(server.stop)


async def test_periodic_resync_restores_a_service_removed_behind_its_back(
        consul_http_addr, made, start_registrator):
    runner = await start_registrator(resync=0.3)
    web = await asyncio.to_thread(made.run, "resync", ports={"8000/tcp": None})
    service_id = f"{NODE}:{web.name}:8000"
    await wait_until(lambda: agent_services(consul_http_addr, made.prefix),
                     lambda s: list(s) == [service_id])
    before = runner.registrator.resyncs
    await asyncio.to_thread(consul_call, consul_http_addr, "PUT",
                            f"/v1/agent/service/deregister/{service_id}")
    services = await wait_until(lambda: agent_services(consul_http_addr, made.prefix),
                                lambda s: list(s) == [service_id])
    assert services[service_id]["Port"] == await asyncio.to_thread(host_port, web)
    assert runner.registrator.resyncs > before
