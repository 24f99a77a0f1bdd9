"""A real dnsmasq (Debian's binary) serving one addn-hosts file and one conf-dir on loopback."""

from __future__ import annotations

import shutil
import signal
import socket
from pathlib import Path

from .process import ManagedProcess, free_port, tcp_open

__all__ = ["Dnsmasq", "dnsmasq_binary", "free_udp_tcp_port"]


def dnsmasq_binary() -> str:
    """Path of ``dnsmasq`` (PATH, then ``/usr/sbin``). :raises RuntimeError: not installed."""
    found = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if not found:
        raise RuntimeError("dnsmasq not found: apt-get install dnsmasq-base")
    return found


def free_udp_tcp_port(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """A port that is free on ``host`` for both TCP and UDP right now (DNS needs both).

    :raises RuntimeError: none found in ``attempts`` tries.
    """
    for _ in range(attempts):
        port = free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both TCP and UDP")


class Dnsmasq:
    """dnsmasq in the foreground on ``127.0.0.1:<port>`` (UDP and TCP), no upstream servers.

    It answers from ``hosts_path`` (an addn-hosts file, re-read on :meth:`reload`) and from the
    ``*.conf`` files in ``conf_dir`` (read at start only: use :meth:`restart`). Its pid is
    also written to ``pid_path`` so another process (dns411) can signal it.
    """

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_udp_tcp_port()
        self.hosts_path = workdir / "hosts"
        self.conf_dir = workdir / "conf.d"
        self.pid_path = workdir / "dnsmasq.pid"
        self.process: ManagedProcess | None = None

    @property
    def argv(self) -> list[str]:
        """The command line (dnsmasq(8): ``--keep-in-foreground``, ``--addn-hosts``,
        ``--conf-dir=<dir>,*.conf``)."""
        return [
            dnsmasq_binary(), "--keep-in-foreground", "--conf-file=/dev/null",
            f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
            "--no-resolv", "--no-hosts", "--user=root", f"--pid-file={self.pid_path}",
            f"--addn-hosts={self.hosts_path}", f"--conf-dir={self.conf_dir},*.conf",
            "--log-facility=-",
        ]

    def start(self) -> Dnsmasq:
        """Create the files when missing, start, wait for the TCP port.

        :raises TimeoutError: / RuntimeError: (with the log tail) it did not come up.
        """
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        if not self.hosts_path.exists():
            self.hosts_path.write_text("")
        self.process = ManagedProcess("dnsmasq", self.argv,
                                      log_path=self.workdir / "dnsmasq.log")
        self.process.start(lambda: tcp_open("127.0.0.1", self.port), timeout=30)
        return self

    def reload(self) -> None:
        """SIGHUP: re-read the addn-hosts file and clear the cache (not the conf files)."""
        if self.process:
            self.process.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        """Stop and start again on the same port (re-reads the conf files)."""
        self.stop()
        self.start()

    def stop(self) -> None:
        """Stop dnsmasq."""
        if self.process:
            self.process.stop()
