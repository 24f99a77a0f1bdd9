"""``unify-wireline-shell``: the forced command of every wireline key.

sshd runs it instead of whatever the client asked for (``authorized_keys`` ``command=``),
with the client's request in ``SSH_ORIGINAL_COMMAND``. It loads the settings file the
service wrote, accepts only ``git-receive-pack '<app>'``/``git-upload-pack '<app>'`` for an app
the key may use (:mod:`wireline.access`), and then replaces itself with git's own
``git-receive-pack`` (``core.hooksPath`` pointing at wireline's ``pre-receive``) or
``git-upload-pack`` on ``<data>/repos/<app>.git``. Refusals print ``wireline: <reason>`` to
the client, exit 1, are logged to ``<data>/log/shell.log`` and published as ``error`` events.

stdout is git's protocol channel: nothing but git may write to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from unify_common import subjects
from unify_common.events import ErrorEvent
from unify_common.logs import configure_logging, get_logger
from unify_common.settings import CommonSettings

from .access import AccessError, parse_command, quote_for_log
from .settings import WirelineSettings

__all__ = ["main", "ensure_hooks", "ensure_repo"]

log = get_logger("wireline.shell")

HOOK = """#!/bin/sh
# written by wireline: every push to the deploy branch deploys (see wireline.pipeline)
exec {python} -m wireline.hook
"""


def _log_to_file(settings: WirelineSettings) -> None:
    common = CommonSettings.from_env()
    configure_logging(fmt=common.log_format, level=common.log_level)
    log_dir = settings.data_dir / "log"
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)  # configure_logging's
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handler.setStream(open(log_dir / "shell.log", "a", encoding="utf-8"))  # noqa: SIM115
    except OSError:
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115


def ensure_hooks(settings: WirelineSettings) -> Path:
    """Write ``<data>/hooks/pre-receive`` (if it differs) and return the hooks directory."""
    from unify_common.atomic import write_atomic
    settings.hooks_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(settings.hooks_dir / "pre-receive",
                 HOOK.format(python=sys.executable).encode(), mode=0o755)
    return settings.hooks_dir


def ensure_repo(settings: WirelineSettings, app: str) -> Path:
    """The bare repository of ``app``, created (``HEAD`` -> the deploy branch) if missing."""
    repo = settings.repos_dir / f"{app}.git"
    if not (repo / "HEAD").exists():
        settings.repos_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare",
                        f"--initial-branch={settings.deploy_branch}", str(repo)],
                       check=True, timeout=30, stdout=subprocess.DEVNULL)
    return repo


async def _publish_refusal(message: str, key: str) -> None:
    from unify_common.natsio import connect_nats, publish_event
    common = CommonSettings.from_env()
    nc = await connect_nats(common, name="wireline-shell", fail_fast=True)
    try:
        event = ErrorEvent(source="wireline", reason="refused-ssh-command", message=message,
                           node=common.node, instance_id=key,
                           observed_at=int(time.time() * 1000))
        await publish_event(nc.jetstream(), subjects.error_subject("wireline"), event,
                            msg_id=f"refused:{key}:{time.time_ns()}")
    finally:
        await nc.close()


def _refuse(message: str, *, key: str, original: str | None) -> int:
    sys.stderr.write(f"wireline: {message}\n")
    sys.stderr.flush()
    log.warning("refused", key=key, reason=message,
                command=quote_for_log(original) if original is not None else None,
                client=os.environ.get("SSH_CLIENT", ""))
    try:
        asyncio.run(asyncio.wait_for(_publish_refusal(message, key), 5))
    except Exception as err:  # NATS away: the log line stays
        log.warning("refusal not published", reason=str(err)[:200])
    return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``unify-wireline-shell`` (see the module doc)."""
    parser = argparse.ArgumentParser(prog="unify-wireline-shell")
    parser.add_argument("--settings", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--fingerprint", default="")
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--apps", default="")
    scope.add_argument("--all", action="store_true")
    args = parser.parse_args(argv)
    try:
        env = json.loads(Path(args.settings).read_text())
    except (OSError, ValueError) as err:
        sys.stderr.write(f"wireline: settings unreadable ({err}); tell the operator\n")
        return 1
    os.environ.update({str(k): str(v) for k, v in env.items()})
    try:
        settings = WirelineSettings.from_env()
    except ValueError as err:
        sys.stderr.write(f"wireline: settings invalid ({err}); tell the operator\n")
        return 1
    _log_to_file(settings)
    original = os.environ.get("SSH_ORIGINAL_COMMAND")
    try:
        command = parse_command(original)
    except AccessError as err:
        return _refuse(str(err), key=args.key, original=original)
    allowed = args.all or command.app in args.apps.split(",")
    if not allowed:
        return _refuse(f"key {args.key} may not use app {command.app}", key=args.key,
                       original=original)
    log.info("accepted", key=args.key, app=command.app, service=command.service,
             fingerprint=args.fingerprint)
    repo = settings.repos_dir / f"{command.app}.git"
    if not command.is_push:
        if not (repo / "HEAD").exists():
            return _refuse(f"no app {command.app} (push to it first)", key=args.key,
                           original=original)
        os.execvp("git", ["git", "upload-pack", "--strict", "--timeout=600", str(repo)])
    repo = ensure_repo(settings, command.app)
    hooks = ensure_hooks(settings)
    os.environ.update(WIRELINE_APP=command.app, WIRELINE_KEY=args.key,
                      WIRELINE_FINGERPRINT=args.fingerprint, WIRELINE_T0=repr(time.time()),
                      WIRELINE_SOCKET=str(settings.socket_path))
    os.execvp("git", ["git", "-c", f"core.hooksPath={hooks}", "-c", "receive.fsckObjects=true",
                      "-c", f"receive.maxInputSize={settings.max_repo_mb << 20}",
                      "receive-pack", str(repo)])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
