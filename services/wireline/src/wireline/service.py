"""``python -m wireline``: the long-running part of wireline.

* keeps an OpenSSH ``sshd`` running as its child (own host key and ``sshd_config`` under
  ``<data>/sshd``; ``-D -e``, restarted with a back-off when it dies);
* renders the ``AuthorizedKeysFile`` from the keys bucket (``unify apps keys``), atomically,
  on every change (a watch on the bucket), keeping the last good file while NATS is away;
* writes the forced command's settings file (``<data>/shell.json``) and the ``pre-receive``
  hook;
* serves ``/livez``, ``/readyz`` (NATS connected, sshd running) and ``/metrics``.

The pushes themselves run in the processes sshd starts (see :mod:`wireline.shell`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path

from unify_common.atomic import write_atomic
from unify_common.health import Health, health_addr
from unify_common.logs import configure_logging, get_logger
from unify_common.settings import CommonSettings

from .access import AccessError, KeyEntry, render_authorized_keys
from .settings import WirelineSettings, shell_env
from .shell import ensure_hooks
from .store import Store, StoredKey

__all__ = ["WirelineService", "main", "sshd_config"]

log = get_logger("wireline")


def sshd_config(settings: WirelineSettings) -> str:
    """The ``sshd_config`` wireline runs sshd with (sshd_config(5)): key-only logins of
    ``ssh_user``, every kind of forwarding, tty and user environment off, the forced command
    coming from each key line."""
    return "\n".join([
        "# written by wireline",
        f"ListenAddress {settings.ssh_listen}",
        f"Port {settings.ssh_port}",
        f"HostKey {settings.host_key}",
        f"PidFile {settings.data_dir / 'sshd' / 'sshd.pid'}",
        f"AuthorizedKeysFile {settings.authorized_keys}",
        f"AllowUsers {settings.ssh_user}",
        "PermitRootLogin forced-commands-only" if settings.ssh_user == "root"
        else "PermitRootLogin no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "DisableForwarding yes",
        "AllowTcpForwarding no",
        "AllowStreamLocalForwarding no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "PermitTTY no",
        "PermitUserEnvironment no",
        "PermitUserRC no",
        "PrintMotd no",
        "MaxStartups 20:50:60",
        "LoginGraceTime 30",
        "ClientAliveInterval 30",
        "Subsystem sftp /bin/false",
        "LogLevel VERBOSE",
        "",
    ])


class WirelineService:
    """sshd + authorized_keys writer; :meth:`run` until cancelled."""

    def __init__(self, settings: WirelineSettings, common: CommonSettings) -> None:
        self.settings = settings
        self.common = common
        self.health = Health("wireline", version="0.1.0")
        self.sshd: subprocess.Popen | None = None
        self.store: Store | None = None

    def prepare(self) -> None:
        """Directories, host key, sshd_config, shell settings, hook."""
        s = self.settings
        for path in (s.data_dir, s.data_dir / "sshd", s.repos_dir, s.data_dir / "log",
                     s.host_key.parent, s.authorized_keys.parent):
            path.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation dir
        if not s.host_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wireline",
                            "-f", str(s.host_key)], check=True, timeout=30)
        write_atomic(s.data_dir / "sshd" / "sshd_config", sshd_config(s).encode(), mode=0o600)
        write_atomic(s.shell_settings_file,
                     json.dumps(shell_env(os.environ), indent=1).encode(), mode=0o644)
        ensure_hooks(s)
        if not s.authorized_keys.exists():
            write_atomic(s.authorized_keys, b"", mode=0o644)

    def write_keys(self, keys: list[StoredKey]) -> bool:
        """Render the ``AuthorizedKeysFile``. :returns: whether it changed."""
        entries = []
        for key in keys:
            entries.append(KeyEntry(name=key.name, key_type=key.key_type, blob=key.blob,
                                    apps=key.apps, all_apps=key.all_apps))
        try:
            text = render_authorized_keys(entries, shell=self.settings.shell,
                                          settings_file=str(self.settings.shell_settings_file))
        except AccessError as err:
            log.error("authorized_keys not written", extra={"fields": {"reason": str(err)}})
            self.health.record_failure("keys")
            return False
        changed = write_atomic(self.settings.authorized_keys, text.encode(), mode=0o644)
        if changed:
            log.info("authorized_keys written", extra={"fields": {"keys": len(entries)}})
        self.health.set_applied_config("sha256:" + hashlib.sha256(text.encode()).hexdigest())
        self.health.record_success()
        return changed

    def start_sshd(self) -> None:
        """Start sshd (``-D -e``), its log appended to ``<data>/log/sshd.log``."""
        s = self.settings
        log_file = open(s.data_dir / "log" / "sshd.log", "ab")  # noqa: SIM115
        try:
            self.sshd = subprocess.Popen(
                [s.sshd_bin, "-D", "-e", "-f", str(s.data_dir / "sshd" / "sshd_config")],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log_file.close()
        log.info("sshd started", extra={"fields": {"pid": self.sshd.pid,
                                                   "port": s.ssh_port}})

    async def _sshd_loop(self) -> None:
        delay = 0.5
        while True:
            if self.sshd is None or self.sshd.poll() is not None:
                if self.sshd is not None:
                    log.warning("sshd exited; restarting", extra={"fields": {
                        "code": self.sshd.returncode}})
                    self.health.record_failure("sshd")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30)
                self.start_sshd()
            else:
                delay = 0.5
            await asyncio.sleep(0.5)

    async def _keys_loop(self) -> None:
        while True:
            try:
                if self.store is None:
                    self.store = await Store.open(self.settings, self.common,
                                                  name="wireline", fail_fast=False)
                self.write_keys(await self.store.list_keys())
                watcher = await self.store.keys.watchall(include_history=False)
                try:
                    async for entry in watcher:
                        if entry is None:
                            continue  # end of the initial values
                        self.write_keys(await self.store.list_keys())
                finally:
                    await watcher.stop()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # NATS away: keep the last good file
                log.warning("keys watch failed; keeping the last authorized_keys",
                            extra={"fields": {"reason": str(err) or type(err).__name__}})
                self.health.record_failure("nats")
                await asyncio.sleep(2)

    async def run(self) -> None:
        """Prepare, start sshd and the keys watch, serve health; until cancelled."""
        self.prepare()
        self.health.add_check("sshd", lambda: None if self.sshd and self.sshd.poll() is None
                              else "sshd not running")
        self.health.add_check("nats", lambda: None if self.store and self.store.nc.is_connected
                              else "not connected to NATS")
        host, port = health_addr(default_port=9106)
        await self.health.start(host, port)
        tasks = [asyncio.create_task(self._sshd_loop()), asyncio.create_task(self._keys_loop())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if self.sshd and self.sshd.poll() is None:
                self.sshd.terminate()
                try:
                    self.sshd.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.sshd.kill()
            if self.store:
                await self.store.close()
            await self.health.stop()


def main() -> int:
    """``python -m wireline``: run until SIGTERM/SIGINT."""
    common = CommonSettings.from_env()
    configure_logging(fmt=common.log_format, level=common.log_level)
    try:
        settings = WirelineSettings.from_env()
    except ValueError as err:
        log.error("bad settings", extra={"fields": {"reason": str(err)}})
        return 2

    async def runner() -> None:
        service = WirelineService(settings, common)
        task = asyncio.create_task(service.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(runner())
    return 0
