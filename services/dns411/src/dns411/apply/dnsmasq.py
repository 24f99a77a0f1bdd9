"""The dnsmasq sink: validate, write atomically, then reload or restart dnsmasq."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from unify_common.atomic import write_atomic
from unify_common.logs import get_logger

from ..names import is_hostname, parse_address
from ..settings import Dns411Settings
from .dnsmasq_process import DnsmasqControl, RestartNeeded

__all__ = ["DnsmasqConfigError", "DnsmasqResult", "DnsmasqSink", "check_hosts"]

log = get_logger("dns411.dnsmasq")


class DnsmasqConfigError(Exception):
    """``dnsmasq --test`` rejected the candidate files; ``str()`` holds its message."""


@dataclass(frozen=True)
class DnsmasqResult:
    """``method``: ``unchanged``, ``reload`` (SIGHUP) or ``restart``; ``did_write``: a file
    changed on disk; ``warning``: something the operator must do (restart dnsmasq);
    ``steps_ms``: milliseconds spent in each step of this apply (``validate``: the hosts
    check and, before a restart, ``dnsmasq --test``; ``write``; ``signal``), empty when
    nothing was written."""

    method: str
    did_write: bool
    warning: str = ""
    steps_ms: dict[str, float] = field(default_factory=dict)


def check_hosts(hosts: bytes, known: frozenset[str] = frozenset()) -> frozenset[str]:
    """Check an addn-hosts candidate (``dnsmasq --test`` never reads one): UTF-8, every line
    blank, a ``#`` comment, or ``<IPv4|IPv6 address> <hostname> [<hostname>...]`` with
    hostnames as :func:`~dns411.names.is_hostname` accepts them.

    :param known: lines that passed before (the previous result): not checked again, so a
        change costs a set lookup per line plus the new lines (~4 µs each).
    :returns: the candidate's lines (pass them as ``known`` next time).
    :raises DnsmasqConfigError: naming the first bad line (1-based).
    """
    try:
        text = hosts.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DnsmasqConfigError(f"hosts file is not UTF-8 (byte {err.start})") from None
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if line in known:
            continue
        fields = line.split("#", 1)[0].split()
        if fields and (len(fields) < 2 or parse_address(fields[0]) is None
                       or not all(is_hostname(name) for name in fields[1:])):
            raise DnsmasqConfigError(f"hosts file line {number} is not '<address> <name>': "
                                     f"{line[:80]!r}")
    return frozenset(lines)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class DnsmasqSink:
    """Owns ``settings.hosts_path`` and ``settings.conf_path``.

    :meth:`apply` never leaves a conf file dnsmasq would refuse: before a restart (the conf
    file changed) the candidates are checked with ``dnsmasq --test`` together with the other
    ``*.conf`` files of the conf-dir (copied into a staging directory) before anything is
    replaced. ``dnsmasq --test`` parses options only and never opens addn-hosts files (a
    missing file or one of garbage passes), so every hosts candidate is checked by
    :func:`check_hosts` instead. A change of the hosts file alone needs no ``--test``: SIGHUP
    re-reads no conf file, so the check could catch nothing there.
    """

    def __init__(self, settings: Dns411Settings, control: DnsmasqControl) -> None:
        self.settings = settings
        self.control = control
        self._pending = ""  # a reload/restart that failed after the files were written
        self._hosts_lines: frozenset[str] = frozenset()  # lines that passed check_hosts

    def _signal(self, method: str) -> str:
        """Reload or restart; returns a warning text when a restart must be done by hand."""
        self._pending = method
        warning = ""
        try:
            if method == "restart":
                self.control.restart()
            else:
                self.control.reload()
        except RestartNeeded as err:
            warning = str(err)
        self._pending = ""
        return warning

    def validate(self, hosts: bytes, conf: bytes) -> None:
        """Run ``dnsmasq --test`` on the candidates (~10 ms: one dnsmasq process).

        :raises DnsmasqConfigError: dnsmasq rejected them."""
        s = self.settings
        s.conf_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".dns411-check.", dir=s.conf_dir.parent))
        try:
            confs = stage / "conf.d"
            confs.mkdir()
            for other in sorted(s.conf_dir.glob("*.conf")):
                if other.name != s.conf_name and other.is_file():
                    shutil.copyfile(other, confs / other.name)
            (confs / s.conf_name).write_bytes(conf)
            (stage / "hosts").write_bytes(hosts)
            argv = [s.dnsmasq_bin, "--test", "--conf-file=/dev/null",
                    f"--conf-dir={confs},*.conf", f"--addn-hosts={stage / 'hosts'}"]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().replace(str(confs) + "/", "")
            raise DnsmasqConfigError(f"dnsmasq --test failed: {message[-500:]}")

    def apply(self, hosts: bytes, conf: bytes, *, dry_run: bool = False) -> DnsmasqResult:
        """Make the files hold ``hosts``/``conf`` and dnsmasq serve them: a changed hosts
        file is checked (:func:`check_hosts`), a changed conf file is checked with
        ``dnsmasq --test`` (:meth:`validate`), then both are written atomically, then
        dnsmasq is SIGHUP'd (hosts only) or restarted (conf changed).

        :raises DnsmasqConfigError: a check failed; the old files stay.
        :raises OSError: / RuntimeError: writing failed or dnsmasq could not be signalled.
        """
        s = self.settings
        hosts_same = _read(s.hosts_path) == hosts
        conf_same = _read(s.conf_path) == conf
        if hosts_same and conf_same:
            if dry_run:
                return DnsmasqResult("unchanged", False)
            if self._pending:
                method = self._pending
                return DnsmasqResult(method, False, self._signal(method))
            self.control.ensure_running()
            return DnsmasqResult("unchanged", False)
        method = "reload" if conf_same and self._pending != "restart" else "restart"
        if dry_run:
            return DnsmasqResult(method, False)
        t0 = time.perf_counter()
        if not hosts_same:
            self._hosts_lines = check_hosts(hosts, self._hosts_lines)
        if method == "restart":
            self.validate(hosts, conf)
        t1 = time.perf_counter()
        s.hosts_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(s.hosts_path, hosts)
        write_atomic(s.conf_path, conf)
        t2 = time.perf_counter()
        warning = self._signal(method)
        t3 = time.perf_counter()
        steps = {"validate": round((t1 - t0) * 1000, 1), "write": round((t2 - t1) * 1000, 1),
                 "signal": round((t3 - t2) * 1000, 1)}
        return DnsmasqResult(method, True, warning, steps)
