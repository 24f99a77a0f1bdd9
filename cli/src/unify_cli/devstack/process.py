"""Start, watch and stop one server process; pick free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["ManagedProcess", "free_port", "reserved_port", "wait_for"]


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A TCP (or, with ``kind=SOCK_DGRAM``, UDP) port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def reserved_port(host: str = "127.0.0.1") -> int:
    """A free TCP port *below* the kernel's ephemeral range, for a server that binds it much
    later (an HAProxy frontend): a port from :func:`free_port` may meanwhile be taken as the
    source port of an outgoing connection.

    :raises RuntimeError: no free port found.
    """
    import random

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, max(10001, low))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str,
             interval: float = 0.05) -> None:
    """Poll ``predicate`` until it returns true.

    :raises TimeoutError: naming ``what`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # not up yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


def tcp_open(host: str, port: int) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    with socket.create_connection((host, port), timeout=0.5):
        return True


class ManagedProcess:
    """One child process with its output in ``log_path``.

    :param name: shown in errors.
    :param argv: the command.
    :param log_path: where stdout and stderr go (appended).
    """

    def __init__(self, name: str, argv: Sequence[str], *, log_path: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self, ready: Callable[[], bool] | None = None, *, timeout: float = 30.0) -> None:
        """Start the process and wait until ``ready()`` is true.

        :raises RuntimeError: the process exited early (its log tail is in the message).
        :raises TimeoutError: it did not become ready in ``timeout`` seconds.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = dict(os.environ) if self.env is None else self.env
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.cwd,
                                     start_new_session=True)
        log.close()
        if ready is None:
            return

        def check() -> bool:
            if self.proc.poll() is not None:
                raise_exited()
            return ready()

        def raise_exited() -> None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise_exited()
            try:
                if check():
                    return
            except RuntimeError:
                raise
            except Exception:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the process log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        """The process id. :raises RuntimeError: not started."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} not started")
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the process."""
        if self.alive():
            os.kill(self.proc.pid, sig)

    def stop(self, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` (SIGTERM), wait, then SIGKILL the whole process group."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
