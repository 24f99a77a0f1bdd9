"""``python -m registry_admin`` as the image runs it: settings from the environment, health
on UNIFY_HEALTH_ADDR, a clean exit on SIGTERM; a bad setting exits 2."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from ra_support import free_port

from consul_bridge.service import run as run_bridge
from consul_bridge.settings import BridgeSettings
from tests.fixtures.components import consul_call
from unify_testkit.aio import wait_until


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


@pytest.mark.timeout(120)
async def test_entrypoint_serves_health_and_stops_on_sigterm(common_settings, consul_http_addr,
                                                             tmp_path):
    stop = asyncio.Event()
    bridge = asyncio.create_task(run_bridge(BridgeSettings(common=common_settings), stop=stop))
    consul_call(consul_http_addr, "PUT", "/v1/catalog/register", {
        "Node": "reg-x", "Address": "127.0.0.9",
        "Service": {"ID": "reg-x:registry:5000", "Service": "registry",
                    "Address": "127.0.0.9", "Port": 5000}})
    health = free_port()
    env = {**os.environ, "NATS_URL": common_settings.nats_urls[0],
           "UNIFY_REGISTRY_STATE_DIR": str(tmp_path / "state"),
           "UNIFY_REGISTRY_CERTS_D": str(tmp_path / "certs.d"),
           "UNIFY_REGISTRY_DOMAINS": "unify.test",
           "UNIFY_REGISTRY_NOTIFY_ADDR": f"127.0.0.1:{free_port()}",
           "UNIFY_HEALTH_ADDR": f"127.0.0.1:{health}"}
    proc = subprocess.Popen([sys.executable, "-m", "registry_admin"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        await wait_until(lambda: (tmp_path / "certs.d" / "registry.unify.test:5000" /
                                  "ca.crt").exists(), timeout=60, what="trust written")
        status, text = await asyncio.to_thread(_get, f"http://127.0.0.1:{health}/readyz?verbose")
        assert status == 200, text
        assert "[+]secret ok" in text and "[+]certificate ok" in text
        assert await asyncio.to_thread(_get, f"http://127.0.0.1:{health}/livez") == (200, "ok\n")
        status, metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{health}/metrics")
        lines = metrics.splitlines()
        assert status == 200
        assert 'unify_registry_admin_build_info{revision="unknown",version="0.1.0"} 1.0' in lines
        # the one instance in the catalog cannot be restarted from here (no restart mode set)
        assert [line for line in lines if line.startswith("unify_registry_admin_errors_total")] \
            == ['unify_registry_admin_errors_total{kind="restart-needed"} 1.0']
        assert sorted(p.name for p in (tmp_path / "certs.d").iterdir()) == [
            "127.0.0.1:5000", "127.0.0.9:5000", "localhost:5000", "reg-x:5000",
            "registry.unify.test:5000"]
        for name in ("ca.key", "http-secret", "notify-token", "registry.yml"):
            assert oct((tmp_path / "state" / name).stat().st_mode & 0o777) == "0o600"
        # a copy in trust mode (the global service on every other Docker node) writes the
        # same certs.d from the public CA certificate alone
        trust_env = {**env, "UNIFY_REGISTRY_MODE": "trust",
                     "UNIFY_REGISTRY_STATE_DIR": str(tmp_path / "other"),
                     "UNIFY_REGISTRY_CA_FILE": str(tmp_path / "state" / "ca.crt"),
                     "UNIFY_REGISTRY_CERTS_D": str(tmp_path / "certs.d-trust"),
                     "UNIFY_HEALTH_ADDR": f"127.0.0.1:{free_port()}"}
        trust = subprocess.Popen([sys.executable, "-m", "registry_admin"], env=trust_env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await wait_until(lambda: (tmp_path / "certs.d-trust" / "reg-x:5000" / "ca.crt"
                                      ).exists(), timeout=60, what="trust mode wrote certs.d")
            assert sorted(p.name for p in (tmp_path / "certs.d-trust").iterdir()) == sorted(
                p.name for p in (tmp_path / "certs.d").iterdir())
            assert (tmp_path / "certs.d-trust" / "reg-x:5000" / "ca.crt").read_bytes() == \
                (tmp_path / "state" / "ca.crt").read_bytes()
            assert not (tmp_path / "other" / "ca.key").exists()  # it makes no CA
        finally:
            trust.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(trust.wait, 20) == 0
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        log = proc.stdout.read().decode()
        state = (tmp_path / "state")
        for secret in ("http-secret", "notify-token"):
            assert (state / secret).read_text().strip() not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        stop.set()
        await asyncio.wait_for(asyncio.gather(bridge, return_exceptions=True), 15)


def test_entrypoint_bad_setting_exits_2():
    out = subprocess.run([sys.executable, "-m", "registry_admin"], capture_output=True,
                         text=True, timeout=30,
                         env={**os.environ, "UNIFY_REGISTRY_RESTART": "sometimes"})
    assert out.returncode == 2
    assert out.stderr == ("registry-admin: UNIFY_REGISTRY_RESTART must be none, docker or "
                          "command\n")
