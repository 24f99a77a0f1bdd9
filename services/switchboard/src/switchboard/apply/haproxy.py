"""The HAProxy sink: validate a configuration, replace the live file atomically, then reload
through the master CLI (or change servers through the runtime API) and confirm it took.

* Validation is ``haproxy -c -f <candidate>`` on a temporary copy next to the live file; a
  configuration that fails it (or whose check does not end within ``check_timeout`` seconds)
  is never written (:class:`ConfigCheckFailed`), so the running workers keep the last good
  configuration.
* Reload is the master CLI ``reload`` command; it is confirmed when ``show proc`` shows the
  master's reload counter up, its failure counter unchanged, and a new worker PID that answers
  ``@<n> show info`` (HAProxy 2.6 management guide, 9.4).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from unify_common.atomic import write_atomic
from unify_common.logs import get_logger

from ..procinfo import ProcInfo, parse_show_proc
from .mastercli import master_command

__all__ = ["ConfigCheckFailed", "HAProxySink", "ReloadFailed"]

log = get_logger("switchboard.haproxy")


class ConfigCheckFailed(Exception):
    """``haproxy -c`` rejected a configuration; ``output`` is HAProxy's message (trimmed)."""

    def __init__(self, output: str) -> None:
        super().__init__(f"haproxy -c rejected the configuration: {output}")
        self.output = output


class ReloadFailed(Exception):
    """HAProxy did not confirm a reload (no master, failed load or timeout); transient."""


def _error_lines(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if "[ALERT]" in ln or "[WARNING]" in ln]
    text = "\n".join(lines or output.strip().splitlines())
    return text[-2000:]


class HAProxySink:
    """Apply configuration bytes to one HAProxy master-worker.

    :param config_path: the live configuration file.
    :param master_socket: the master CLI socket.
    :param haproxy_bin: HAProxy executable used for ``-c``.
    :param reload_timeout: seconds to wait for a reload to be confirmed.
    :param check_timeout: longest run of ``haproxy -c`` in seconds (it takes about 0.5 s at
        10,000 instances); a check still running then is killed and counts as a rejection.

    The sink keeps no account of what the worker runs: :meth:`write` says whether the file
    changed, :meth:`reload` and :meth:`runtime` whether the worker took it, and the caller
    (the reconciler's :class:`~switchboard.decision.LiveState`) draws the conclusions.
    """

    def __init__(self, *, config_path: Path, master_socket: Path, haproxy_bin: str = "haproxy",
                 reload_timeout: float = 30.0, check_timeout: float = 60.0) -> None:
        self.config_path = config_path
        self.master_socket = master_socket
        self.haproxy_bin = haproxy_bin
        self.reload_timeout = reload_timeout
        self.check_timeout = check_timeout
        self._map_dirs: set[Path] = set()  # where host maps were written

    def live_bytes(self) -> bytes | None:
        """The live file's content, or ``None`` when it does not exist."""
        try:
            return self.config_path.read_bytes()
        except FileNotFoundError:
            return None

    async def check(self, data: bytes) -> None:
        """Run ``haproxy -c`` on ``data``.

        :raises ConfigCheckFailed: HAProxy rejected it, ``haproxy`` could not run, or the
            check took longer than ``check_timeout`` seconds (the process is killed).
        """
        fd, tmp = tempfile.mkstemp(dir=self.config_path.parent,
                                   prefix=f".{self.config_path.name}.", suffix=".check")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            try:
                proc = await asyncio.create_subprocess_exec(
                    self.haproxy_bin, "-c", "-f", tmp,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT)
            except OSError as err:
                raise ConfigCheckFailed(f"cannot run {self.haproxy_bin}: {err}") from None
            try:
                output, _ = await asyncio.wait_for(proc.communicate(), self.check_timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise ConfigCheckFailed(f"{self.haproxy_bin} -c did not finish within "
                                        f"{self.check_timeout:g}s") from None
        finally:
            Path(tmp).unlink(missing_ok=True)
        if proc.returncode != 0:
            raise ConfigCheckFailed(_error_lines(
                output.decode(errors="replace").replace(tmp, "<candidate>")))

    async def write(self, data: bytes, maps: Mapping[str, bytes] | None = None) -> bool:
        """Check ``data`` and, if valid, replace the live file with it.

        :param maps: map files the configuration reads (absolute path -> content, see
            :func:`switchboard.render.render_maps`). Changed ones are replaced atomically
            *before* ``haproxy -c`` (which opens them) and put back as they were when the
            check fails; running workers never re-read them, a reload does.
        :returns: whether the file or a map changed.
        :raises ConfigCheckFailed: invalid; the live file and the maps are as before.
        """
        changed_maps: dict[Path, tuple[bytes, bytes | None]] = {}
        for raw, content in (maps or {}).items():
            path = Path(raw)
            try:
                old = path.read_bytes()
            except FileNotFoundError:
                old = None
            if old != content:
                changed_maps[path] = (content, old)
        if self.live_bytes() == data and not changed_maps:
            return False
        for path, (content, _) in changed_maps.items():
            write_atomic(path, content)
        try:
            await self.check(data)
        except ConfigCheckFailed:
            for path, (_, old) in changed_maps.items():
                if old is None:
                    path.unlink(missing_ok=True)
                else:
                    write_atomic(path, old)
            raise
        write_atomic(self.config_path, data)
        self._remove_stale_maps(maps or {})
        return True

    def _remove_stale_maps(self, maps: Mapping[str, bytes]) -> None:
        """Delete the host map files (``fe_*.map``) of frontends the written configuration no
        longer has, in the directories this sink has written maps to. Running workers hold
        their maps in memory, and the file on disk no longer names these, so nothing reads
        them again."""
        self._map_dirs |= {Path(raw).parent for raw in maps}
        keep = {Path(raw) for raw in maps}
        for directory in sorted(self._map_dirs):
            for path in directory.glob("fe_*.map"):
                if path not in keep:
                    path.unlink(missing_ok=True)
                    log.info("host map of a removed frontend deleted", path=str(path))

    async def cli(self, command: str) -> str:
        """One master CLI command. :raises OSError: / asyncio.TimeoutError: no master."""
        return await master_command(self.master_socket, command)

    async def proc_info(self) -> ProcInfo:
        """The master's ``show proc``. :raises OSError: / ValueError: no master answers."""
        return parse_show_proc(await self.cli("show proc"))

    async def master_alive(self) -> bool:
        """True when a master answers ``show proc`` with at least one worker."""
        try:
            return bool((await self.proc_info()).workers)
        except (TimeoutError, OSError, ValueError):
            return False

    async def reload(self) -> int:
        """Reload HAProxy and wait for the new worker.

        :returns: the new worker's PID.
        :raises ReloadFailed: no master, the master reported a failed load, or no new worker
            answered within ``reload_timeout`` seconds.
        """
        try:
            before = await self.proc_info()
        except (TimeoutError, OSError, ValueError) as err:
            raise ReloadFailed(f"no HAProxy master at {self.master_socket}: {err}") from None
        try:
            await self.cli("reload")
        except (TimeoutError, OSError):
            pass  # the master re-executes itself and may drop the connection
        deadline = time.monotonic() + self.reload_timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            try:
                now = await self.proc_info()
            except (TimeoutError, OSError, ValueError):
                continue
            if now.failed > before.failed:
                raise ReloadFailed("HAProxy could not load the new configuration; the previous "
                                   "workers keep serving")
            fresh = [pid for pid in now.workers if pid not in before.workers]
            if now.reloads > before.reloads and fresh and await self._answers(fresh[0]):
                return fresh[0]
        raise ReloadFailed(f"no new HAProxy worker after {self.reload_timeout:.0f}s")

    async def _answers(self, pid: int) -> bool:
        try:
            info = await self.cli(f"@!{pid} show info")
        except (TimeoutError, OSError):
            return False
        return f"Pid: {pid}\n" in info

    async def runtime(self, commands: Sequence[str]) -> bool:
        """Send runtime API commands to the current worker.

        Commands go in batches, one master CLI connection per batch: ``@1 <command>`` each,
        chained with ``;`` (HAProxy 2.6 management guide, 9.4: the master CLI runs chained
        commands in order and returns every answer), lines kept under 8,000 bytes so they
        fit HAProxy's buffer.

        :returns: False when a batch had a refused command (the caller then reloads
            instead; the rest of that batch has run, later batches are not sent).
        :raises OSError: / asyncio.TimeoutError: the master does not answer.
        """
        batches: list[list[str]] = []
        size = 0
        for command in commands:
            part = f"@1 {command}"
            if not batches or size + len(part) + 2 > 8000:
                batches.append([])
                size = 0
            batches[-1].append(part)
            size += len(part) + 2
        for batch in batches:
            answer = (await self.cli("; ".join(batch))).strip()
            lowered = answer.lower()
            if any(word in lowered for word in ("no such", "require", "invalid", "unknown",
                                                 "failed", "not ", "error", "denied")):
                log.warning("runtime command refused; will reload", commands="; ".join(batch)[:300],
                    answer=answer[:300])
                return False
        return True
