"""``python -m registrator`` stopped by SIGTERM while still starting (NATS and Docker
unreachable) exits cleanly with status 0, as ``docker stop`` expects at any moment. No
Docker engine is used: DOCKER_HOST points at a socket that does not exist."""

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


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


@pytest.mark.timeout(60)
async def test_sigterm_while_nats_and_docker_are_unreachable_exits_0(consul_http_addr,
                                                                     tmp_path):
    health, nowhere = _free_port(), _free_port()  # nothing listens on ``nowhere``
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UNIFY_", "CONSUL_", "DOCKER_"))}
    env.update(CONSUL_HTTP_ADDR=consul_http_addr, NATS_URL=f"nats://127.0.0.1:{nowhere}",
               DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock", UNIFY_NODE="h4-starting",
               UNIFY_HEALTH_ADDR=f"127.0.0.1:{health}", UNIFY_REGISTRATOR_NATS="1")
    log_path = tmp_path / "registrator.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "registrator"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        # not ready (Docker cannot be read) and NATS retried in the background
        def starting() -> None:
            if proc.poll() is not None:
                raise RuntimeError(f"registrator exited with {proc.returncode}:\n"
                                   f"{log_path.read_text()[-2000:]}")
            readyz = _get(health, "/readyz?verbose")
            written = log_path.read_text()
            assert readyz[1].startswith("[-]docker failed: ") \
                and "NATS unreachable" in written, f"{readyz}\n{written[-2000:]}"

        await wait_until(starting, returns, timeout=30,
                         what="registrator not ready (Docker failed) and retrying NATS")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    written = log_path.read_text()
    assert code == 0, written[-2000:]
    assert "Traceback" not in written
    assert _get(health, "/livez") == (0, "")  # health stopped with it
