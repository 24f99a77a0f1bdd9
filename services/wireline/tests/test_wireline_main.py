"""``python -m wireline`` stops cleanly on SIGTERM, also while it is still starting (NATS not
reachable yet): exit status 0, its sshd gone, the hook socket removed. Real sshd, no NATS
server at the configured address."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

from unify_testkit import wait_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ssh_banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        return conn.recv(64)


def test_sigterm_while_nats_is_unreachable_stops_cleanly(tmp_path):
    ssh_port, health_port, nats_port = _free_port(), _free_port(), _free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("UNIFY_", "NATS_", "CONSUL_"))}
    env.update({"NATS_URL": f"nats://127.0.0.1:{nats_port}",  # nothing listens there
                "UNIFY_WIRELINE_DATA_DIR": str(tmp_path / "data"),
                "UNIFY_WIRELINE_SSH_LISTEN": "127.0.0.1",
                "UNIFY_WIRELINE_SSH_PORT": str(ssh_port), "UNIFY_WIRELINE_SSH_USER": "root",
                "UNIFY_WIRELINE_REGISTRY": "127.0.0.1:5999",
                "UNIFY_HEALTH_ADDR": f"127.0.0.1:{health_port}"})
    log = open(tmp_path / "wireline.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "wireline"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        def sshd_answers() -> bytes:
            if proc.poll() is not None:
                raise RuntimeError(f"wireline exited with {proc.returncode}:\n"
                                   f"{(tmp_path / 'wireline.log').read_text()[-2000:]}")
            return _ssh_banner(ssh_port)  # refused (OSError): not yet

        banner = wait_until(sshd_answers, timeout=30, interval=0.1,
                            what=f"wireline's sshd answering on port {ssh_port}")
        assert banner.startswith(b"SSH-2.0-OpenSSH"), (tmp_path / "wireline.log").read_text()
        # still starting: not ready without NATS
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=2)
            ready = 200
        except urllib.error.HTTPError as err:
            ready = err.code
        assert ready == 503
        sshd_pid = int((tmp_path / "data" / "sshd" / "sshd.pid").read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, (tmp_path / "wireline.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    assert not (tmp_path / "data" / "wireline.sock").exists()
    wait_until(lambda: not os.path.exists(f"/proc/{sshd_pid}"), timeout=10, interval=0.1,
               what=f"wireline's sshd (pid {sshd_pid}) gone")
    try:
        _ssh_banner(ssh_port)
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused


def test_bad_settings_exit_2_and_a_missing_sshd_exits_1(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("UNIFY_", "NATS_", "CONSUL_"))}
    env.update({"NATS_URL": f"nats://127.0.0.1:{_free_port()}",
                "UNIFY_WIRELINE_DATA_DIR": str(tmp_path / "data"),
                "UNIFY_WIRELINE_SSH_LISTEN": "127.0.0.1", "UNIFY_WIRELINE_SSH_USER": "root",
                "UNIFY_HEALTH_ADDR": f"127.0.0.1:{_free_port()}", "UNIFY_LOG_FORMAT": "json"})
    bad = subprocess.run([sys.executable, "-m", "wireline"], capture_output=True, text=True,
                         timeout=60, check=False,
                         env={**env, "UNIFY_WIRELINE_SSH_PORT": "x"})
    assert (bad.returncode, bad.stderr) == (
        2, "wireline: UNIFY_WIRELINE_SSH_PORT must be an integer, got 'x'\n")
    missing = subprocess.run([sys.executable, "-m", "wireline"], capture_output=True,
                             text=True, timeout=60, check=False,
                             env={**env, "UNIFY_WIRELINE_SSH_PORT": str(_free_port()),
                                  "UNIFY_WIRELINE_SSHD_BIN": str(tmp_path / "no-sshd")})
    assert missing.returncode == 1, missing.stderr
    import json
    errors = [json.loads(line) for line in missing.stderr.splitlines()
              if line.startswith("{") and json.loads(line)["level"] == "error"]
    assert [e["msg"] for e in errors] == ["cannot start"], missing.stderr
