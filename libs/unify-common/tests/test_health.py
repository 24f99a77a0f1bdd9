"""The health endpoints and metrics, served for real on a loopback port (fake wall clock)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest

from unify_common.health import Health, health_addr, probe


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.parametrize("raw, expected", [
    ("", ("127.0.0.1", 9101)),
    ("0.0.0.0:9200", ("0.0.0.0", 9200)),
    (":9300", ("127.0.0.1", 9300)),
    ("[::1]:9400", ("::1", 9400)),
])
def test_health_addr(raw, expected):
    assert health_addr(default_port=9101, env={"UNIFY_HEALTH_ADDR": raw}) == expected


@pytest.mark.parametrize("raw", ["9101", "host:", "host:http", "host:70000"])
def test_health_addr_rejects(raw):
    with pytest.raises(ValueError, match="UNIFY_HEALTH_ADDR must be host:port"):
        health_addr(default_port=1, env={"UNIFY_HEALTH_ADDR": raw})


async def test_endpoints_follow_checks_and_outcomes():
    clock = Clock()
    health = Health("consul-bridge", version="1.2.3", revision="abc123", clock=clock)
    connected = {"nats": False}
    health.add_check("nats", lambda: None if connected["nats"] else "not connected to NATS")
    _, port = await health.start("127.0.0.1", 0)
    try:
        get = lambda path: asyncio.to_thread(_get, port, path)  # noqa: E731
        assert await get("/livez") == (200, "ok\n")
        assert await get("/readyz") == (503, "not ready\n")
        assert await get("/readyz?verbose") == (503, (
            "[-]nats failed: not connected to NATS\n"
            "[-]last-success failed: no success yet\n"
            "readyz check failed\n"))
        connected["nats"] = True
        health.record_success()
        assert await get("/readyz?verbose") == (200, (
            "[+]nats ok\n[+]last-success ok\nreadyz check passed\n"))
        clock.now = 1005.0
        health.record_failure("reload-failed")
        assert await get("/readyz?verbose") == (503, (
            "[+]nats ok\n[-]last-success failed: last attempt failed (reload-failed)\n"
            "readyz check failed\n"))
        clock.now = 1010.0
        health.record_success()
        assert (await get("/readyz"))[0] == 200
        assert await asyncio.to_thread(probe, {"UNIFY_HEALTH_ADDR": f"0.0.0.0:{port}"}) == 0

        health.events_published.labels(subject="unify.catalog.kv.set").inc(2)
        health.set_applied_config("sha256:feed")
        with health.time_reconcile():
            pass
        status, text = await get("/metrics")
        assert status == 200
        lines = set(text.splitlines())
        assert 'unify_consul_bridge_events_published_total{subject="unify.catalog.kv.set"} 2.0' in lines
        assert 'unify_consul_bridge_errors_total{kind="reload-failed"} 1.0' in lines
        assert "unify_consul_bridge_last_success_timestamp_seconds 1010.0" in lines
        assert "unify_consul_bridge_last_failure_timestamp_seconds 1005.0" in lines
        assert 'unify_consul_bridge_applied_config_info{config_hash="sha256:feed"} 1.0' in lines
        assert 'unify_consul_bridge_build_info{revision="abc123",version="1.2.3"} 1.0' in lines
        assert "unify_consul_bridge_reconcile_duration_seconds_count 1.0" in lines
    finally:
        await health.stop()
    assert probe({"UNIFY_HEALTH_ADDR": f"127.0.0.1:{port}"}) == 1
