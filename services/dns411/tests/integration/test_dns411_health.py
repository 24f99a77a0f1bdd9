"""``python -m dns411`` (running its dnsmasq) serves /livez, /readyz and /metrics on
``UNIFY_HEALTH_ADDR``: what it consumed, published and applied, read from the outside."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import nats
from dns411_support import both

from tests.fixtures.catalog import make_instance, put_instance
from unify_common.events import Applied, ErrorEvent, decode_event
from unify_testkit import returns
from unify_testkit.aio import wait_until
from unify_testkit.devstack.dnsmasq import free_udp_tcp_port
from unify_testkit.devstack.process import free_port

NODE = "dns-health"


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def metric_lines(port: int) -> set[str]:
    status, text = scrape(port, "/metrics")
    assert status == 200
    return set(text.splitlines())


async def test_health_endpoints_of_the_running_dns411(tmp_path, dns_common):
    nc = await nats.connect(dns_common.nats_urls[0])
    js = nc.jetstream()
    applied: list[Applied] = []
    errors: list[ErrorEvent] = []

    async def collect(msg) -> None:
        event = decode_event(msg.data)
        (applied if isinstance(event, Applied) else errors).append(event)

    await nc.subscribe(f"unify.applied.dns411.{NODE}", cb=collect)
    await nc.subscribe("unify.error.dns411", cb=collect)
    await put_instance(js, dns_common, make_instance("web", "web-1", "10.0.0.1", 8080,
                                                     ["dns=example.com"]))
    dns_port, health_port = free_udp_tcp_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "UNIFY_"))}
    env.update({
        "NATS_URL": dns_common.nats_urls[0], "UNIFY_NODE": NODE,
        "UNIFY_DNSMASQ_MANAGE": "1", "UNIFY_DNSMASQ_PORT": str(dns_port),
        "UNIFY_DNSMASQ_USER": "root", "UNIFY_DNSMASQ_HOSTS": str(tmp_path / "dns411.hosts"),
        "UNIFY_DNSMASQ_CONF_DIR": str(tmp_path / "conf.d"), "UNIFY_ROUTE53_ENABLED": "0",
        "UNIFY_HEALTH_ADDR": f"127.0.0.1:{health_port}"})
    started = time.time()
    log = open(tmp_path / "dns411.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "dns411"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        def ready():
            assert scrape(health_port, "/readyz")[0] == 200

        await wait_until(ready, returns, timeout=30, what="dns411 ready")

        def answers() -> None:  # dnsmasq, started by the first reconcile, may still bind
            assert both(dns_port, "web.example.com") == (
                "NOERROR", [("web.example.com.", "A", 30, "10.0.0.1")])
        await wait_until(answers, returns, timeout=10, what="dnsmasq answering")
        assert scrape(health_port, "/livez") == (200, "ok\n")
        assert scrape(health_port, "/readyz?verbose") == (200, (
            "[+]nats ok\n[+]dnsmasq ok\n[+]last-success ok\nreadyz check passed\n"))
        assert [(e.method, e.detail) for e in applied] == [
            ("reload", "dnsmasq=restart route53_changes=0")]
        lines = metric_lines(health_port)
        assert {
            'unify_dns411_events_consumed_total{subject="$KV.unify-catalog.>"} 1.0',
            f'unify_dns411_events_published_total{{subject="unify.applied.dns411.{NODE}"}} 1.0',
            f'unify_dns411_applied_config_info{{config_hash="{applied[0].config_hash}"}} 1.0',
            'unify_dns411_reconcile_duration_seconds_count 1.0',
            'unify_dns411_apply_duration_seconds_count 1.0',
            'unify_dns411_last_failure_timestamp_seconds 0.0',
            'unify_dns411_build_info{revision="unknown",version="0.1.0"} 1.0',
        } <= lines
        (success,) = [float(line.split()[1]) for line in lines
                      if line.startswith("unify_dns411_last_success_timestamp_seconds ")]
        assert started <= success <= time.time()

        # a rejected instance: reported (counted by reason), nothing else changes
        await put_instance(js, dns_common, make_instance("api", "api-1", "10.0.0.7", 80,
                                                         ["dns=example.com", "vhost=a b"]))
        await wait_until(lambda: len(applied) == 2 and errors, timeout=10,
                         what="a second Applied and the error event")
        assert [e.reason for e in errors] == ["invalid-tags"]
        assert (applied[1].method, applied[1].config_hash) == ("unchanged",
                                                               applied[0].config_hash)
        lines = metric_lines(health_port)
        assert {
            'unify_dns411_events_consumed_total{subject="$KV.unify-catalog.>"} 2.0',
            f'unify_dns411_events_published_total{{subject="unify.applied.dns411.{NODE}"}} 2.0',
            'unify_dns411_events_published_total{subject="unify.error.dns411"} 1.0',
            'unify_dns411_errors_total{kind="invalid-tags"} 1.0',
            'unify_dns411_reconcile_duration_seconds_count 2.0',
        } <= lines
        assert scrape(health_port, "/readyz") == (200, "ok\n")  # bad input: still ready
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
        log.close()
        await nc.close()
    assert code == 0, (tmp_path / "dns411.log").read_text()[-2000:]


async def test_dead_dnsmasq_is_unready_until_the_periodic_resync_starts_it(tmp_path, dns_common):
    nc = await nats.connect(dns_common.nats_urls[0])
    await put_instance(nc.jetstream(), dns_common, make_instance(
        "web", "web-1", "10.0.0.1", 8080, ["dns=example.com"]))
    await nc.close()
    dns_port, health_port = free_udp_tcp_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "UNIFY_"))}
    env.update({
        "NATS_URL": dns_common.nats_urls[0], "UNIFY_NODE": NODE,
        "UNIFY_DNSMASQ_MANAGE": "1", "UNIFY_DNSMASQ_PORT": str(dns_port),
        "UNIFY_DNSMASQ_USER": "root", "UNIFY_DNSMASQ_HOSTS": str(tmp_path / "dns411.hosts"),
        "UNIFY_DNSMASQ_CONF_DIR": str(tmp_path / "conf.d"), "UNIFY_ROUTE53_ENABLED": "0",
        "UNIFY_DNS411_TICK": "2", "UNIFY_HEALTH_ADDR": f"127.0.0.1:{health_port}"})
    log = open(tmp_path / "dns411.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "dns411"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        await wait_until(lambda: _ready(health_port), returns, timeout=30, what="dns411 ready")
        (child,) = _children(proc.pid)
        os.kill(child, signal.SIGKILL)
        verdicts = set()

        def ready_again() -> bool:
            status, text = scrape(health_port, "/readyz?verbose")
            verdicts.add((status, text))
            return status == 200 and len(verdicts) > 1

        # unready at once, ready again after the next resync
        await wait_until(ready_again, timeout=10, what="dns411 unready, then ready again")
        assert (503, "[+]nats ok\n[-]dnsmasq failed: dnsmasq is not running\n"
                     "[+]last-success ok\nreadyz check failed\n") in verdicts
        assert scrape(health_port, "/readyz") == (200, "ok\n")
        (restarted,) = _children(proc.pid)
        assert restarted != child

        def answers() -> None:  # the new dnsmasq runs before it listens: poll its answer
            assert both(dns_port, "web.example.com") == (
                "NOERROR", [("web.example.com.", "A", 30, "10.0.0.1")])
        await wait_until(answers, returns, timeout=10, what="the restarted dnsmasq answering")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
        log.close()
    assert code == 0, (tmp_path / "dns411.log").read_text()[-2000:]


def _ready(port: int) -> None:
    assert scrape(port, "/readyz") == (200, "ok\n")


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc)."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return [c for c in out if _state(c) not in ("Z", "")]


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""
