"""``python -m switchboard`` (managing its HAProxy) serves /livez, /readyz and /metrics on
``UNIFY_HEALTH_ADDR``: what it consumed, published and applied, read from the outside."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from sb_support import Events, get_body

from tests.fixtures.catalog import make_instance, put_instance
from unify_testkit.aio import wait_until
from unify_testkit.devstack.process import free_port

NODE = "health-node"


async def scrape(port: int, path: str) -> tuple[int, str]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        resp = await client.get(f"http://127.0.0.1:{port}{path}")
        return resp.status_code, resp.text


async def test_health_endpoints_of_the_running_switchboard(sb_common, nc, backends, run_dir,
                                                           tmp_path):
    events = Events()
    await nc.subscribe(f"unify.applied.switchboard.{NODE}", cb=events.handle)
    await nc.subscribe("unify.error.switchboard", cb=events.handle)
    js = nc.jetstream()
    port, health_port = free_port(), free_port()
    alpha, beta = backends("alpha"), backends("beta")
    tags = ["dns=example.com", "vhost=web", f"http={port}"]
    await put_instance(js, sb_common, make_instance("web", "web-1", "127.0.0.1", alpha.port,
                                                    tags))
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIFY_")}
    env.update(NATS_URL=sb_common.nats_urls[0], UNIFY_NODE=NODE,
               UNIFY_HAPROXY_CONFIG=str(run_dir / "haproxy.cfg"),
               UNIFY_HAPROXY_MASTER_SOCKET=str(run_dir / "master.sock"),
               UNIFY_HAPROXY_BIND="127.0.0.1", UNIFY_HAPROXY_MANAGE="1",
               UNIFY_HAPROXY_CERT_DIR=str(tmp_path / "no-certs"),
               UNIFY_HEALTH_ADDR=f"127.0.0.1:{health_port}")
    started = time.time()
    log = open(tmp_path / "switchboard.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "switchboard"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        async def ready() -> bool:
            try:
                return (await scrape(health_port, "/readyz"))[0] == 200
            except httpx.HTTPError:
                return False

        await wait_until(ready, timeout=30, what="switchboard ready")
        assert await get_body(port, "web.example.com") == (200, "alpha")
        assert await scrape(health_port, "/livez") == (200, "ok\n")
        assert await scrape(health_port, "/readyz?verbose") == (200, (
            "[+]nats ok\n[+]haproxy ok\n[+]last-success ok\nreadyz check passed\n"))
        assert [(e.method, e.detail) for e in events.applied] == [("reload", "revision 1")]
        first = events.applied[0].config_hash
        lines = await metric_lines(health_port)
        assert {
            'unify_switchboard_events_consumed_total{subject="$KV.unify-catalog.>"} 1.0',
            f'unify_switchboard_events_published_total{{subject="unify.applied.switchboard.{NODE}"}} 1.0',
            f'unify_switchboard_applied_config_info{{config_hash="{first}"}} 1.0',
            'unify_switchboard_reconcile_duration_seconds_count 1.0',
            'unify_switchboard_apply_duration_seconds_count 1.0',
            'unify_switchboard_last_failure_timestamp_seconds 0.0',
            'unify_switchboard_build_info{revision="unknown",version="0.1.0"} 1.0',
        } <= lines
        assert started <= gauge(lines, "unify_switchboard_last_success_timestamp_seconds") \
            <= time.time()

        # a second server (a quick runtime step, then the debounced apply) and a rejected one
        await put_instance(js, sb_common, make_instance("web", "web-2", "127.0.0.1",
                                                        beta.port, tags))
        await put_instance(js, sb_common, make_instance("bad", "bad-1", "127.0.0.1", 1,
                                                        ["dns=example.com", "vhost=a b"]))
        await wait_until(lambda: len(events.applied) == 3 and events.errors,
                         what="the quick step's, then the reconcile's Applied, and the error")
        quick, full = events.applied[1:]
        assert (quick.method, quick.config_hash) == ("runtime", "")
        assert full.config_hash not in ("", first)
        assert [e.reason for e in events.errors] == ["invalid-tags"]
        lines = await metric_lines(health_port)
        assert {
            'unify_switchboard_events_consumed_total{subject="$KV.unify-catalog.>"} 3.0',
            f'unify_switchboard_events_published_total{{subject="unify.applied.switchboard.{NODE}"}} 3.0',
            'unify_switchboard_events_published_total{subject="unify.error.switchboard"} 1.0',
            'unify_switchboard_errors_total{kind="invalid-tags"} 1.0',
            f'unify_switchboard_applied_config_info{{config_hash="{full.config_hash}"}} 1.0',
        } <= lines
        assert await scrape(health_port, "/readyz") == (200, "ok\n")  # bad input: still ready
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        log.close()
    assert code == 0, (tmp_path / "switchboard.log").read_text()[-2000:]


async def metric_lines(port: int) -> set[str]:
    status, text = await scrape(port, "/metrics")
    assert status == 200
    return set(text.splitlines())


def gauge(lines: set[str], name: str) -> float:
    (value,) = [float(line.split()[1]) for line in lines if line.split()[0] == name]
    return value
