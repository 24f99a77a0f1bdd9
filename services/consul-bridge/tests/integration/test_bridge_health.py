"""Two ``python -m consul_bridge`` processes (leader and standby) against real Consul and
NATS serve /livez, /readyz and /metrics on ``UNIFY_HEALTH_ADDR``: both are ready, the leader
counts what it published and wrote."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import nats
import pytest

from tests.fixtures.components import consul_call
from unify_testkit import returns
from unify_testkit.aio import wait_until
from unify_testkit.devstack.process import free_port


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def metric_lines(port: int) -> set[str]:
    status, text = scrape(port, "/metrics")
    assert status == 200
    return set(text.splitlines())


async def wait_ready(port: int, proc: subprocess.Popen, log_path, timeout: float = 30) -> None:
    """Wait until the bridge ``proc`` answers 200 on /readyz at ``port``; its exit fails at
    once (RuntimeError), and both failures show the end of its log at ``log_path``."""
    def ready() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"consul-bridge exited with {proc.returncode}:\n"
                               f"{log_path.read_text()[-2000:]}")
        status, body = scrape(port, "/readyz?verbose")
        assert status == 200, f"{status} {body}\n{log_path.read_text()[-2000:]}"

    await wait_until(ready, returns, timeout=timeout,
                     what=f"consul-bridge ready (/readyz) on port {port}")


READY = "[+]nats ok\n[+]consul ok\n[+]last-success ok\nreadyz check passed\n"


@pytest.mark.timeout(120)
async def test_leader_and_standby_health(common_settings, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNIFY_", "CONSUL_"))}
    env.update(CONSUL_HTTP_ADDR=common_settings.consul_addr,
               NATS_URL=common_settings.nats_urls[0])
    procs: list[tuple[subprocess.Popen, object]] = []

    def start(node: str, port: int) -> subprocess.Popen:
        log_path = tmp_path / f"{node}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "consul_bridge"], env={
                **env, "UNIFY_NODE": node, "UNIFY_HEALTH_ADDR": f"127.0.0.1:{port}",
                "UNIFY_BRIDGE_WAIT": "30"}, stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log_path))
        return proc

    leader_port, standby_port = free_port(), free_port()
    nc = await nats.connect(common_settings.nats_urls[0])
    try:
        leader = start("bridge-a", leader_port)
        await wait_ready(leader_port, leader, procs[0][1])
        standby = start("bridge-b", standby_port)
        await wait_ready(standby_port, standby, procs[1][1])
        js = nc.jetstream()
        seen: list[str] = []

        async def collect(msg) -> None:
            seen.append(msg.subject)

        await js.subscribe("unify.catalog.>", cb=collect, ordered_consumer=True)
        consul_call(common_settings.consul_addr, "PUT", "/v1/agent/service/register", {
            "ID": "web-1", "Name": "web", "Port": 8080, "Address": "127.0.0.1",
            "Tags": ["dns=example.com"]})
        await wait_until(lambda: seen, timeout=15, what="an event on unify.catalog.>")
        assert seen == ["unify.catalog.instance.registered.web"]

        for port in (leader_port, standby_port):
            assert scrape(port, "/livez") == (200, "ok\n")
            assert scrape(port, "/readyz?verbose") == (200, READY)
        lines = metric_lines(leader_port)
        assert {
            'unify_consul_bridge_events_published_total'
            '{subject="unify.catalog.instance.registered.web"} 1.0',
            'unify_consul_bridge_apply_duration_seconds_count 1.0',  # one bucket write
            'unify_consul_bridge_last_failure_timestamp_seconds 0.0',
            'unify_consul_bridge_build_info{revision="unknown",version="0.1.0"} 1.0',
        } <= lines
        assert not any(line.startswith("unify_consul_bridge_errors_total{") for line in lines)
        reconciles = [float(line.split()[1]) for line in lines if line.startswith(
            "unify_consul_bridge_reconcile_duration_seconds_count ")]
        assert reconciles[0] >= 2  # the web service's answer and the KV prefix's, at least
        standby_lines = metric_lines(standby_port)
        assert {
            'unify_consul_bridge_last_success_timestamp_seconds 0.0',
            'unify_consul_bridge_apply_duration_seconds_count 0.0',
            'unify_consul_bridge_build_info{revision="unknown",version="0.1.0"} 1.0',
        } <= standby_lines
        assert not any(line.startswith("unify_consul_bridge_events_published_total{")
                       for line in standby_lines)
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(proc.wait, 20) for proc, _ in procs]
        await nc.close()
    assert codes == [0, 0], [p.read_text()[-1500:] for _, p in procs]
