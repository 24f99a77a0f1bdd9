"""``python -m wireline.hook``: the ``pre-receive`` hook ``git-receive-pack`` runs.

Reads ``<old> <new> <ref>`` lines on stdin (githooks(5), "pre-receive") and the push's
context from the environment the forced command set (``WIRELINE_APP``, ``WIRELINE_KEY``,
``WIRELINE_FINGERPRINT``, ``WIRELINE_T0``, ``WIRELINE_SOCKET``), and hands the push to the
running wireline service over its unix socket (one JSON line; the answer is the output,
line by line, then ``NUL exit <code>``), relaying every line to the pusher. This module
imports nothing but the standard library, so a push pays no start-up time for the Docker
SDK, NATS or YAML. When the service cannot be reached the hook runs the pipeline itself
(:func:`wireline.pipeline.run_push`).

Output reaches the pusher as ``remote:`` lines; a non-zero exit rejects the whole push. The
pushed objects are still in git's quarantine: its ``GIT_OBJECT_DIRECTORY`` and
``GIT_ALTERNATE_OBJECT_DIRECTORIES`` travel with the request.
"""

from __future__ import annotations

import json
import os
import socket
import sys

__all__ = ["GIT_ENV", "main"]

#: The hook's git variables the service needs to read the quarantined objects.
GIT_ENV = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")
EXIT_MARK = "\0exit "


def _in_process(updates: list[tuple[str, str, str]]) -> int:
    import asyncio

    from unify_common.settings import CommonSettings

    from .pipeline import PushContext, run_push
    from .settings import WirelineSettings
    from .shell import _log_to_file

    settings = WirelineSettings.from_env()
    _log_to_file(settings)
    ctx = PushContext(app=os.environ["WIRELINE_APP"],
                      repo=settings.repos_dir / f"{os.environ['WIRELINE_APP']}.git",
                      pusher=os.environ.get("WIRELINE_KEY", ""),
                      fingerprint=os.environ.get("WIRELINE_FINGERPRINT", ""))
    try:
        ctx.started = float(os.environ.get("WIRELINE_T0", "")) or ctx.started
    except ValueError:
        pass
    return asyncio.run(run_push(settings, CommonSettings.from_env(), ctx, updates,
                                stream=sys.stderr))


def main() -> int:
    """Run the hook; returns its exit code."""
    updates = []
    for line in sys.stdin.read().splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append((parts[0], parts[1], parts[2]))
    request = {"app": os.environ.get("WIRELINE_APP", ""),
               "key": os.environ.get("WIRELINE_KEY", ""),
               "fingerprint": os.environ.get("WIRELINE_FINGERPRINT", ""),
               "t0": os.environ.get("WIRELINE_T0", ""),
               "updates": updates,
               "git_env": {k: os.environ[k] for k in GIT_ENV if k in os.environ}}
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(os.environ.get("WIRELINE_SOCKET", ""))
    except OSError:
        conn.close()
        sys.stderr.write("wireline service not reachable; deploying from the hook\n")
        return _in_process(updates)
    with conn, conn.makefile("rb") as answer:
        conn.sendall(json.dumps(request).encode() + b"\n")
        for raw in answer:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith(EXIT_MARK):
                return int(line[len(EXIT_MARK):] or 1)
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
    sys.stderr.write("deploy failed: wireline went away during the push\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
