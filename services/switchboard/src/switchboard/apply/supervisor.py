"""Run HAProxy as switchboard's child (``UNIFY_HAPROXY_MANAGE=1``, used by ``unify dev up``).

HAProxy runs in master-worker mode, ``haproxy -W -db -f <config> -S <socket>,mode,600``
(HAProxy 2.6 management guide, 3 "Starting HAProxy" and 9.4 "Master CLI"); reloads still go
through the master CLI like for an HAProxy started by anyone else. When the master exits it is
started again by :meth:`HAProxySupervisor.ensure_running`.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from unify_common.logs import get_logger

from .haproxy import HAProxySink, ReloadFailed

__all__ = ["HAProxySupervisor"]

log = get_logger("switchboard.supervisor")


class HAProxySupervisor:
    """Start, watch and stop one HAProxy master for ``sink`` (its config and socket).

    :param log_path: where HAProxy's output goes (appended).
    """

    def __init__(self, sink: HAProxySink, *, log_path: Path, start_timeout: float = 30.0):
        self.sink = sink
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.process: asyncio.subprocess.Process | None = None
        #: masters started and answering so far (each one loaded the file as it was then)
        self.starts = 0

    async def ensure_running(self) -> bool:
        """Start HAProxy unless a master already answers on the socket.

        Call only once the config file holds a checked configuration.

        :returns: True when it was started now.
        :raises ReloadFailed: it exited or did not answer within ``start_timeout`` seconds.
        """
        if self.process is not None and self.process.returncode is None:
            # Our master is alive. It may not answer right now (it re-executes itself on
            # every reload and parses the whole configuration): never start a second one.
            return False
        if await self.sink.master_alive():
            return False  # a master we did not start (or started before a restart) answers
        self.sink.master_socket.unlink(missing_ok=True)
        log_file = open(self.log_path, "ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                self.sink.haproxy_bin, "-W", "-db", "-f", str(self.sink.config_path),
                "-S", f"{self.sink.master_socket},mode,600",
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                start_new_session=True)
        finally:
            log_file.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise ReloadFailed(f"haproxy exited with {self.process.returncode}; "
                                   f"see {self.log_path}")
            if await self.sink.master_alive():
                self.starts += 1
                log.info("haproxy started", pid=self.process.pid)
                return True
            await asyncio.sleep(0.05)
        raise ReloadFailed(f"haproxy did not answer within {self.start_timeout:.0f}s")

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the master (SIGTERM stops its workers too), then SIGKILL after ``timeout``."""
        proc, self.process = self.process, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
