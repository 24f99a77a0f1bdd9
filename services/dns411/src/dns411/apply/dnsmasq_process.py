"""Telling dnsmasq about new files: SIGHUP re-reads addn-hosts files, a restart re-reads
conf files (dnsmasq(8), "NOTES"). Either dns411 runs dnsmasq as its own child
(:class:`ManagedDnsmasq`) or it signals one found through a pid file (:class:`PidFileDnsmasq`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from unify_common.logs import get_logger

from ..settings import Dns411Settings

__all__ = ["DnsmasqControl", "ManagedDnsmasq", "PidFileDnsmasq", "NoDnsmasq", "RestartNeeded",
           "control_for"]

log = get_logger("dns411.dnsmasq")

#: DNS query, id 0x6411: ``version.bind`` class CHAOS type TXT (RFC 4892)
_READY_QUERY = (b"\x64\x11\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                b"\x07version\x04bind\x00\x00\x10\x00\x03")


class RestartNeeded(Exception):
    """The conf file changed but dns411 cannot restart this dnsmasq; the hosts file was
    re-read (SIGHUP). ``str()`` says what to do."""


class DnsmasqControl:
    """Interface: ``reload()`` (hosts changed) and ``restart()`` (conf changed).
    Both raise :class:`OSError` (or ``RuntimeError``) when dnsmasq cannot be reached."""

    def ensure_running(self) -> None:
        """Start (again) when dns411 runs dnsmasq and it is not running."""

    def reload(self) -> None:
        """Make dnsmasq re-read the addn-hosts file (SIGHUP)."""
        raise NotImplementedError

    def restart(self) -> None:
        """Make dnsmasq re-read its conf files (restart).

        :raises RestartNeeded: this control cannot restart dnsmasq (hosts were re-read).
        """
        raise NotImplementedError

    def stop(self) -> None:
        """Stop a child dnsmasq (nothing for an external one)."""


class NoDnsmasq(DnsmasqControl):
    """Files only (another component signals dnsmasq)."""

    def reload(self) -> None:
        """Nothing to signal: logged."""
        log.info("dnsmasq hosts file changed; no dnsmasq to signal configured")

    def restart(self) -> None:
        """:raises RestartNeeded: always."""
        raise RestartNeeded("dnsmasq conf changed; no dnsmasq to restart is configured")


def dnsmasq_argv(settings: Dns411Settings) -> list[str]:
    """The managed dnsmasq's command line (only dns411's files; no /etc/dnsmasq.conf, no
    /etc/hosts, no upstream resolvers besides the conf file's ``server=`` lines)."""
    argv = [settings.dnsmasq_bin, "--keep-in-foreground", "--conf-file=/dev/null",
            f"--port={settings.port}", f"--listen-address={settings.listen}",
            "--bind-interfaces", "--no-resolv", "--no-hosts",
            f"--addn-hosts={settings.hosts_path}", f"--conf-dir={settings.conf_dir},*.conf",
            "--log-facility=-"]
    if settings.user:
        argv.append(f"--user={settings.user}")
    return argv


class ManagedDnsmasq(DnsmasqControl):
    """dnsmasq as dns411's child process (``UNIFY_DNSMASQ_MANAGE=1``); output goes to
    dns411's stderr."""

    def __init__(self, settings: Dns411Settings, *, ready_timeout: float = 15.0) -> None:
        self.settings = settings
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def answers(self, timeout: float = 0.02) -> bool:
        """True when the child answers a DNS query over UDP on its port within ``timeout``
        seconds (any reply counts: the sockets are bound and the main loop runs).

        The query (``version.bind`` CHAOS TXT, answered by dnsmasq itself) goes through a
        connected socket, so while nothing is bound the kernel's ICMP port-unreachable
        ends the attempt at once (``ConnectionRefusedError``) instead of a timeout.
        """
        s = self.settings
        family = socket.AF_INET6 if ":" in s.listen else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect((s.listen, s.port))
                sock.send(_READY_QUERY)
                return len(sock.recv(512)) >= 12  # at least a DNS header
            except OSError:  # refused (not bound yet), timed out
                return False

    def start(self) -> None:
        """Start dnsmasq and wait until it answers DNS (see :meth:`answers`), checked every
        millisecond: a start takes ~10 ms on loopback, and the files are served from the
        first answer on (dnsmasq reads them before it answers anything).

        :raises RuntimeError: it exited (bad option, port taken) or did not answer within
            ``ready_timeout`` seconds (then it is stopped).
        """
        self.proc = subprocess.Popen(dnsmasq_argv(self.settings), stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited with {self.proc.returncode} at start")
            if self.answers():
                log.info("dnsmasq started", pid=self.proc.pid, port=self.settings.port)
                return
            time.sleep(0.001)
        self.stop()
        raise RuntimeError("dnsmasq did not answer in time")

    def ensure_running(self) -> None:
        """Start the child when it is not running (it died, or was never started)."""
        if self.pid is None:
            if self.proc is not None:
                log.warning("dnsmasq was not running; starting it",
                            exit=self.proc.returncode)
            self.start()

    def reload(self) -> None:
        """SIGHUP the child (started first when not running)."""
        self.ensure_running()
        assert self.proc is not None, "ensure_running() starts it"
        os.kill(self.proc.pid, signal.SIGHUP)

    def restart(self) -> None:
        """Stop and start the child: SIGTERM, reaped, started again on the same port (free
        once the old one exited); no fixed sleeps.

        :raises RuntimeError: it did not come back."""
        self.stop()
        self.start()

    def stop(self) -> None:
        """SIGTERM the child, SIGKILL after 10 seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class PidFileDnsmasq(DnsmasqControl):
    """An external dnsmasq whose pid is in ``pid_file``; a restart runs ``restart_cmd``
    (e.g. ``systemctl restart dnsmasq``), or is reported as needed when none is set."""

    def __init__(self, pid_file: Path, restart_cmd: tuple[str, ...] = ()) -> None:
        self.pid_file = pid_file
        self.restart_cmd = restart_cmd

    def _pid(self) -> int:
        text = self.pid_file.read_text().strip()
        if not text.isdigit():
            raise RuntimeError(f"pid file {self.pid_file} does not hold a pid")
        return int(text)

    def reload(self) -> None:
        """SIGHUP the pid in the pid file. :raises OSError: / RuntimeError: no such process."""
        os.kill(self._pid(), signal.SIGHUP)

    def restart(self) -> None:
        """Run the restart command.

        :raises RestartNeeded: none configured (hosts were re-read by SIGHUP).
        :raises RuntimeError: the command failed.
        """
        if not self.restart_cmd:
            self.reload()
            raise RestartNeeded("dnsmasq conf changed but UNIFY_DNSMASQ_RESTART_CMD is not "
                                "set; hosts were re-read, restart dnsmasq for the conf file")
        result = subprocess.run(list(self.restart_cmd), capture_output=True, text=True,
                                timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"dnsmasq restart command failed ({result.returncode}): "
                               f"{result.stderr.strip()[-300:]}")


def control_for(settings: Dns411Settings) -> DnsmasqControl:
    """The control the settings ask for: managed child, pid file, or none."""
    if settings.manage:
        return ManagedDnsmasq(settings)
    if settings.pid_file is not None:
        return PidFileDnsmasq(settings.pid_file, settings.restart_cmd)
    return NoDnsmasq()
