"""A real Consul agent in ``-dev`` mode on free loopback ports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

from .process import ManagedProcess, free_port

__all__ = ["ConsulAgent", "consul_binary"]

_REPO = Path(__file__).resolve().parents[5]  # libs/unify-testkit/src/unify_testkit/devstack


def consul_binary() -> str:
    """Path of the Consul binary: ``$UNIFY_CONSUL_BIN``, the cache, or ``consul`` on PATH;
    builds it with ``scripts/build-consul.sh`` when none exists.

    :raises RuntimeError: no binary and the build failed.
    """
    if os.environ.get("UNIFY_CONSUL_BIN"):
        return os.environ["UNIFY_CONSUL_BIN"]
    cached = Path(os.environ.get("UNIFY_CACHE_DIR", Path.home() / ".cache/unify")) / "bin/consul"
    if cached.exists():
        return str(cached)
    on_path = shutil.which("consul")
    if on_path:
        return on_path
    script = _REPO / "scripts/build-consul.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building Consul failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


class ConsulAgent:
    """``consul agent -dev`` bound to 127.0.0.1 with every port chosen free.

    ``http_addr`` is ``127.0.0.1:<port>`` (for ``CONSUL_HTTP_ADDR``); ``dns_port`` serves
    Consul DNS. The per-client connection limit is raised so one bridge may hold many
    blocking queries.
    """

    def __init__(self, workdir: Path, *, node: str = "unify-dev",
                 extra_config: dict | None = None) -> None:
        self.workdir = workdir
        self.node = node
        self.extra_config = extra_config or {}
        self.http_port = free_port()
        self.dns_port = free_port()
        self.process: ManagedProcess | None = None

    @property
    def http_addr(self) -> str:
        """``127.0.0.1:<http port>``."""
        return f"127.0.0.1:{self.http_port}"

    def start(self) -> ConsulAgent:
        """Start the agent and wait for a leader. :raises TimeoutError: / RuntimeError."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "node_name": self.node,
            "bind_addr": "127.0.0.1",
            "client_addr": "127.0.0.1",
            "ports": {"http": self.http_port, "dns": self.dns_port, "grpc": -1, "grpc_tls": -1,
                      "serf_lan": free_port(), "serf_wan": free_port(), "server": free_port()},
            "limits": {"http_max_conns_per_client": 4096},
            "log_level": "warn",
            "disable_update_check": True,
            **self.extra_config,
        }
        cfg = self.workdir / "consul.json"
        cfg.write_text(json.dumps(config))
        self.process = ManagedProcess(
            "consul", [consul_binary(), "agent", "-dev", f"-config-file={cfg}"],
            log_path=self.workdir / "consul.log")
        self.process.start(self._has_leader, timeout=60)
        return self

    def _has_leader(self) -> bool:
        token = (self.extra_config.get("acl") or {}).get("tokens", {}).get(
            "initial_management", "")
        req = urllib.request.Request(f"http://{self.http_addr}/v1/status/leader",
                                     headers={"X-Consul-Token": token} if token else {})
        with urllib.request.urlopen(req, timeout=1) as r:
            return json.loads(r.read()) not in ("", None)

    def stop(self) -> None:
        """Stop the agent (all dev-mode data is lost)."""
        if self.process:
            self.process.stop()
