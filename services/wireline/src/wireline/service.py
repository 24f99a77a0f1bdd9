"""``python -m wireline``: the long-running part of wireline.

* keeps an OpenSSH ``sshd`` running as its child (own host key and ``sshd_config`` under
  ``<data>/sshd``; ``-D -e``, restarted with a back-off when it dies);
* renders the ``AuthorizedKeysFile`` from the keys bucket (``unify apps keys``), atomically,
  on every change (a watch on the bucket), keeping the last good file while NATS is away;
* writes the forced command's settings file (``<data>/shell.json``) and the ``pre-receive``
  hook;
* runs the pushes: the ``pre-receive`` hook of each push (started by sshd's forced command,
  :mod:`wireline.shell`) connects to ``<data>/wireline.sock`` and this process runs
  :func:`wireline.pipeline.run_push` for it, streaming the output back (see
  :mod:`wireline.hook` for the framing). Everything is imported and NATS is connected
  already, so a push pays neither; killing this process stops every deploy in flight and
  their locks expire within the TTL;
* serves ``/livez``, ``/readyz`` (NATS connected, sshd running) and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from unify_common.atomic import write_atomic
from unify_common.health import Health
from unify_common.logs import configure_logging, get_logger
from unify_common.runloop import run_until_stopped
from unify_common.settings import CommonSettings, env_only_parser

from .access import AccessError, KeyEntry, check_app_name, render_authorized_keys
from .hook import EXIT_MARK, GIT_ENV
from .pipeline import PushContext, run_push
from .settings import WirelineSettings, shell_env
from .shell import ensure_hooks
from .store import Store, StoredKey

__all__ = ["WirelineService", "main", "parse_push_request", "sshd_config"]

log = get_logger("wireline")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_REF_RE = re.compile(r"^refs/[A-Za-z0-9._/-]{1,200}$")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: sshd goes when wireline goes


def parse_push_request(raw: bytes, settings: WirelineSettings) -> tuple[PushContext, list]:
    """Check a hook's request (one JSON line, see :mod:`wireline.hook`).

    The repository is derived from the app name, never taken from the request; the git
    variables must point inside that repository.

    :returns: (context, ``(old, new, ref)`` updates).
    :raises ValueError: malformed request (the message is shown to the pusher).
    """
    try:
        request = json.loads(raw)
        app = check_app_name(str(request["app"]))
        updates = [(str(o), str(n), str(r)) for o, n, r in request["updates"]]
        git_env = {str(k): str(v) for k, v in (request.get("git_env") or {}).items()}
        started = float(request.get("t0") or time.time())
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed hook request ({err})") from None
    for old, new, ref in updates:
        if not (_SHA_RE.match(old) and _SHA_RE.match(new) and _REF_RE.match(ref)):
            raise ValueError("malformed ref update")
    repo = settings.repos_dir / f"{app}.git"
    for key, value in git_env.items():
        paths = value.split(":") if key == "GIT_ALTERNATE_OBJECT_DIRECTORIES" else [value]
        if key not in GIT_ENV or not all(
                Path(p).resolve().is_relative_to(repo.resolve()) for p in paths if p):
            raise ValueError(f"refused git variable {key}")
    return PushContext(app=app, repo=repo, pusher=str(request.get("key", "")),
                       fingerprint=str(request.get("fingerprint", "")), started=started,
                       git_env=git_env), updates


class _SocketStream:
    """A text stream onto a hook's socket; silent once the hook went away."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def write(self, text: str) -> None:
        if not self.writer.is_closing():
            self.writer.write(text.replace("\0", "").encode())

    def flush(self) -> None:
        return None


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
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task] = []

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
        self._hand_over(s.repos_dir, s.data_dir / "log")

    def _hand_over(self, *dirs: Path) -> None:
        """Give the SSH user the folders its forced command writes (the repositories, the
        shell's log) when wireline runs as root and pushes arrive as another user."""
        if os.geteuid() != 0 or self.settings.ssh_user == "root":
            return
        try:
            user = pwd.getpwnam(self.settings.ssh_user)
        except KeyError:
            log.warning("ssh user unknown; its folders stay root's", user=self.settings.ssh_user)
            return
        for folder in dirs:
            for path in (folder, *folder.rglob("*")):
                os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)

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
            log.error("authorized_keys not written", reason=str(err))
            self.health.record_failure("keys")
            return False
        changed = write_atomic(self.settings.authorized_keys, text.encode(), mode=0o644)
        if changed:
            log.info("authorized_keys written", keys=len(entries))
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
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent)
        finally:
            log_file.close()
        log.info("sshd started", pid=self.sshd.pid, port=s.ssh_port)

    async def _sshd_loop(self) -> None:
        delay = 0.5
        while True:
            if self.sshd is None or self.sshd.poll() is not None:
                if self.sshd is not None:
                    log.warning("sshd exited; restarting", code=self.sshd.returncode)
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
                            reason=str(err) or type(err).__name__)
                self.health.record_failure("nats")
                await asyncio.sleep(2)

    async def _serve_push(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        stream = _SocketStream(writer)
        code = 1
        try:
            raw = await asyncio.wait_for(reader.readline(), 30)
            ctx, updates = parse_push_request(raw, self.settings)
            store = self.store if self.store and self.store.nc.is_connected else None
            with self.health.time_apply():
                code = await run_push(self.settings, self.common, ctx, updates,
                                      stream=stream, store=store)
            if code == 0:
                self.health.record_success()
            else:
                self.health.record_failure("push")
        except ValueError as err:
            stream.write(f"refused: {err}\n")
            log.warning("hook request refused", reason=str(err))
        except Exception as err:  # never leave a pusher without an answer
            log.exception("push failed")
            stream.write(f"deploy failed: internal error ({type(err).__name__})\n")
        finally:
            if not writer.is_closing():
                writer.write(f"{EXIT_MARK}{code}\n".encode())
                try:
                    await writer.drain()
                except ConnectionError:
                    pass
                writer.close()

    async def _push_server(self) -> asyncio.AbstractServer:
        path = self.settings.socket_path
        path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._serve_push, path=str(path))
        os.chmod(path, 0o660)
        if os.geteuid() == 0 and self.settings.ssh_user != "root":
            try:
                user = pwd.getpwnam(self.settings.ssh_user)
                os.chown(path, user.pw_uid, user.pw_gid)
            except KeyError:
                log.warning("ssh user unknown; hook socket left to root",
                            user=self.settings.ssh_user)
        return server

    async def start(self) -> None:
        """Prepare, serve health, open the hook socket, start sshd and the keys watch; returns
        once they run (NATS is connected in the background: a push without NATS still
        deploys, its release is not recorded)."""
        self.prepare()
        self.health.add_check("sshd", lambda: None if self.sshd and self.sshd.poll() is None
                              else "sshd not running")
        self.health.add_check("nats", lambda: None if self.store and self.store.nc.is_connected
                              else "not connected to NATS")
        await self.health.start(*self.settings.health_addr)
        self._server = await self._push_server()
        self.start_sshd()  # a missing or broken sshd binary fails the start
        self._tasks = [asyncio.create_task(self._sshd_loop(), name="sshd"),
                       asyncio.create_task(self._keys_loop(), name="keys")]
        for task in self._tasks:
            task.add_done_callback(self._loop_ended)

    def _loop_ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            err = task.exception()
            log.error("loop failed; the service no longer follows sshd or the keys",
                      loop=task.get_name(), error=str(err) or repr(err))
            self.health.record_failure("loop")

    async def stop(self) -> None:
        """Stop what :meth:`start` started (any part of it): the loops, the hook socket, sshd
        (SIGTERM, SIGKILL after 10 s), NATS, the health server."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._server is not None:
            self._server.close()
            self._server = None
            self.settings.socket_path.unlink(missing_ok=True)
        if self.sshd and self.sshd.poll() is None:
            self.sshd.terminate()
            try:
                await asyncio.to_thread(self.sshd.wait, 10)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
        if self.store:
            await self.store.close()
            self.store = None
        await self.health.stop()

    async def run(self) -> None:
        """:meth:`start`, then serve until cancelled, then :meth:`stop`."""
        try:
            await self.start()
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m wireline``: run until SIGTERM/SIGINT (also while starting:
    :func:`unify_common.runloop.run_until_stopped`); 0 on a clean stop, 2 for bad settings,
    1 when it cannot start."""
    # --help prints the module doc and exits 0 here, before anything starts
    env_only_parser("unify-wireline", __doc__).parse_args(
        sys.argv[1:] if argv is None else argv)
    try:
        common = CommonSettings.from_env()
        settings = WirelineSettings.from_env()
    except ValueError as err:
        print(f"wireline: {err}", file=sys.stderr)
        return 2
    configure_logging(fmt=common.log_format, level=common.log_level)
    service = WirelineService(settings, common)
    try:
        asyncio.run(run_until_stopped(
            service.start, service.stop,
            on_started=lambda: log.info("wireline running", node=common.node,
                                        port=settings.ssh_port, user=settings.ssh_user,
                                        health=service.health.bound)))
    except (OSError, subprocess.SubprocessError) as err:
        log.error("cannot start", error=str(err) or repr(err))
        return 1
    return 0
