"""``python -m consul_bridge`` stopped by SIGTERM while still starting (NATS unreachable)
exits cleanly with status 0, as ``docker stop`` expects at any moment."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from unify_testkit import returns
from unify_testkit.aio import wait_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _livez(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2) as resp:
            return resp.status
    except OSError:
        return 0


@pytest.mark.timeout(60)
async def test_sigterm_while_nats_is_unreachable_exits_0(consul_http_addr, tmp_path):
    health, nowhere = _free_port(), _free_port()  # nothing listens on ``nowhere``
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNIFY_", "CONSUL_"))}
    env.update(CONSUL_HTTP_ADDR=consul_http_addr, NATS_URL=f"nats://127.0.0.1:{nowhere}",
               UNIFY_NODE="h4-starting", UNIFY_HEALTH_ADDR=f"127.0.0.1:{health}")
    log_path = tmp_path / "bridge.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "consul_bridge"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        # health is served before the NATS connection: once it answers, the bridge is
        # inside its start, retrying NATS
        def serving() -> None:
            if proc.poll() is not None:
                raise RuntimeError(f"consul-bridge exited with {proc.returncode}:\n"
                                   f"{log_path.read_text()[-2000:]}")
            assert _livez(health) == 200, log_path.read_text()[-2000:]

        await wait_until(serving, returns, timeout=30,
                         what=f"consul-bridge answering /livez on port {health}")
        assert "consul-bridge running" not in log_path.read_text()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, log_path.read_text()[-2000:]
    assert _livez(health) == 0  # health stopped with it
