"""Real Debian ``docker-registry`` processes for registry-admin's tests: several instances on
loopback ports sharing one storage directory and one rendered configuration, each kept
running by a small supervisor thread so that "restart" means SIGTERM + start again with the
files as they are now (what a container restart does)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_cert_der(host: str, port: int, timeout: float = 2.0) -> bytes | None:
    """The DER certificate a TLS server presents, or None when it does not answer."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert(binary_form=True)
    except OSError:
        return None


@dataclass
class RegistryProcess:
    """One supervised ``docker-registry serve`` on 127.0.0.1:port."""

    name: str
    port: int
    config: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    restarts: int = 0
    _stop: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "RegistryProcess":
        env = {"PATH": os.environ.get("PATH", ""), "REGISTRY_HTTP_ADDR": f"127.0.0.1:{self.port}",
               **self.env}
        with self._lock:
            handle = open(self.log, "ab")
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config)], env=env,
                                         stdout=handle, stderr=subprocess.STDOUT)
            handle.close()
        return self

    def restart(self) -> None:
        """Stop (SIGTERM, bounded) and start again with the current files."""
        self.terminate()
        self.restarts += 1
        self.start()

    def terminate(self) -> None:
        with self._lock:
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def wait_serving(self, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            der = served_cert_der("127.0.0.1", self.port, timeout=1.0)
            if der is not None:
                return der
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not serve TLS on {self.port}")
