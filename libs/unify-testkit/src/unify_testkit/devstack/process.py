"""Start, watch and stop one server process; pick free loopback ports."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from ..poll import NotReached, wait_until

__all__ = ["ManagedProcess", "die_with_parent", "free_port", "reserved_port", "tcp_open"]

#: prctl(2) option: the signal a process gets when the thread that forked it ends
#: (<linux/prctl.h>).
_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that ties the child to this process:
    Linux sends the child ``sig`` when its parent ends, however it ends (SIGKILL included),
    through ``prctl(PR_SET_PDEATHSIG)`` (prctl(2)). Were the parent already gone by the time
    the child runs it, the child kills itself at once.

    The kernel sends the signal when the *thread* that forked the child ends, so use it
    only from a thread that lives as long as the process (the main thread).
    """
    global _libc
    if _libc is None:  # loaded in the parent: the child only calls it between fork and exec
        _libc = ctypes.CDLL(None, use_errno=True)
    prctl, parent = _libc.prctl, os.getpid()

    def tie() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:  # the parent ended before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return tie


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


def tcp_open(host: str, port: int) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    with socket.create_connection((host, port), timeout=0.5):
        return True


class ManagedProcess:
    """One child process with its output in ``log_path``.

    Started from the main thread, the child gets SIGTERM when this process ends, even by
    SIGKILL (see :func:`die_with_parent`), so a killed ``unify dev up`` or test run leaves
    no server behind; the services stop their own HAProxy and dnsmasq on SIGTERM.

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
        main = threading.current_thread() is threading.main_thread()
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.cwd,
                                     start_new_session=True,
                                     preexec_fn=die_with_parent() if main else None)
        log.close()
        if ready is None:
            return
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:  # not a "not yet": fails at once
                raise RuntimeError(f"{self.name} exited with {proc.returncode}:\n"
                                   f"{self.tail()}")
            try:
                return bool(ready())
            except Exception:  # not answering yet, whatever the probe raises
                return False

        try:
            wait_until(up, timeout=timeout, what=f"{self.name} ready")
        except NotReached:
            raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s:\n"
                               f"{self.tail()}") from None

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
        if self.proc is not None and self.alive():
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
