"""A real HAProxy in master-worker mode with a master CLI socket, for ``unify dev up`` and tests.

HAProxy is started as ``haproxy -W -db -f <config> -p <pidfile> -S <socket>,mode,600``
(HAProxy 2.6 management guide, section 9.4 "Master CLI"): the master re-executes itself on the
``reload`` command of that socket and keeps the old worker serving when a new configuration
fails to load.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from .process import ManagedProcess

__all__ = ["HAProxyServer", "haproxy_binary", "master_cli"]

_MINIMAL_CONFIG = """\
global
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""


def haproxy_binary() -> str:
    """``$UNIFY_HAPROXY_BIN``, else ``haproxy`` on PATH.

    :raises RuntimeError: HAProxy is not installed (``apt-get install haproxy``).
    """
    configured = os.environ.get("UNIFY_HAPROXY_BIN", "")
    if configured:
        return configured
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if not found:
        raise RuntimeError("haproxy not found: apt-get install haproxy")
    return found


def master_cli(socket_path: str | os.PathLike[str], command: str, *,
               timeout: float = 5.0) -> str:
    """Send one command to a master CLI socket and return the whole answer as text.

    :raises OSError: the socket does not exist or does not answer within ``timeout`` seconds.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(socket_path))
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class HAProxyServer:
    """HAProxy master-worker serving ``config`` (a path), master CLI at ``workdir/master.sock``.

    When ``config`` does not exist yet a minimal valid configuration (no frontends) is written
    there first, so a config manager such as switchboard can take over from an empty state.
    ``workdir/haproxy.log`` receives HAProxy's output.
    """

    def __init__(self, workdir: Path, config: Path | None = None) -> None:
        self.workdir = workdir
        self.config = config or workdir / "haproxy.cfg"
        self.master_socket = workdir / "master.sock"
        self.pidfile = workdir / "haproxy.pid"
        self.process: ManagedProcess | None = None

    def start(self, *, timeout: float = 30.0) -> HAProxyServer:
        """Start HAProxy and wait until the master CLI answers with a running worker.

        :raises RuntimeError: HAProxy exited (bad configuration; its log tail is in the message).
        :raises TimeoutError: no worker within ``timeout`` seconds.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.config.exists():
            self.config.write_text(_MINIMAL_CONFIG)
        self.master_socket.unlink(missing_ok=True)
        self.process = ManagedProcess(
            "haproxy",
            [haproxy_binary(), "-W", "-db", "-f", str(self.config), "-p", str(self.pidfile),
             "-S", f"{self.master_socket},mode,600"],
            log_path=self.workdir / "haproxy.log")
        self.process.start(lambda: bool(self.worker_pids()), timeout=timeout)
        return self

    def cli(self, command: str) -> str:
        """One master CLI command (``show proc``, ``reload``, ``@1 show info``...)."""
        return master_cli(self.master_socket, command)

    def worker_pids(self) -> list[int]:
        """PIDs of the current workers (not the old ones still finishing), from ``show proc``."""
        pids: list[int] = []
        section = ""
        for line in self.cli("show proc").splitlines():
            if line.startswith("#"):
                section = line
                continue
            fields = line.split()
            if len(fields) >= 2 and fields[1] == "worker" and section == "# workers":
                pids.append(int(fields[0]))
        return pids

    def stop(self) -> None:
        """Stop the master and its workers."""
        if self.process:
            self.process.stop()
        self.master_socket.unlink(missing_ok=True)
