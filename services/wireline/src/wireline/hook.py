"""``python -m wireline.hook``: the ``pre-receive`` hook ``git-receive-pack`` runs.

Reads ``<old> <new> <ref>`` lines on stdin (githooks(5), "pre-receive") and the push's
context from the environment the forced command set (``WIRELINE_APP``, ``WIRELINE_KEY``,
``WIRELINE_FINGERPRINT``, ``WIRELINE_T0``, ``WIRELINE_REPO``), then runs
:func:`wireline.pipeline.run_push`. Its output reaches the pusher as ``remote:`` lines; a
non-zero exit rejects the whole push. The pushed objects are still in git's quarantine here,
which the inherited ``GIT_*`` variables make readable to ``git archive``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from unify_common.settings import CommonSettings

from .pipeline import PushContext, run_push
from .settings import WirelineSettings
from .shell import _log_to_file

__all__ = ["main"]


def main() -> int:
    """Run the hook; returns its exit code."""
    settings = WirelineSettings.from_env()
    _log_to_file(settings)
    updates = []
    for line in sys.stdin.read().splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append((parts[0], parts[1], parts[2]))
    try:
        started = float(os.environ.get("WIRELINE_T0", "") or 0) or None
    except ValueError:
        started = None
    ctx = PushContext(app=os.environ["WIRELINE_APP"],
                      repo=Path(os.environ.get("WIRELINE_REPO") or os.getcwd()),
                      pusher=os.environ.get("WIRELINE_KEY", ""),
                      fingerprint=os.environ.get("WIRELINE_FINGERPRINT", ""))
    if started:
        ctx.started = started
    return asyncio.run(run_push(settings, CommonSettings.from_env(), ctx, updates,
                                stream=sys.stderr))


if __name__ == "__main__":
    sys.exit(main())
