"""The CLI's error lines, run as processes: secrets in URLs masked and a short reason instead
of an exception's repr."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(args: list[str], env: dict[str, str], python_flags: tuple[str, ...] = ()):
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run([sys.executable, *python_flags, "-m", "unify_cli.main", *args],
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_registry_ls_masks_the_password_and_says_why():
    # nothing listens on 127.0.0.1:3 (nor NATS on :1): both refuse at once
    result = _run(["registry", "ls"], {"UNIFY_REGISTRY_URL": "https://u:regs3cret@127.0.0.1:3",
                                       "NATS_URL": "nats://127.0.0.1:1"})
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", "unify registry ls: https://u:***@127.0.0.1:3: GET /v2/_catalog?n=100: cannot "
               "connect to 127.0.0.1:3: connection refused\n")


def test_apps_masks_the_nats_password():
    result = _run(["apps", "ls"], {"NATS_URL": "nats://u:n4ts-pw@127.0.0.1:1"})
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("unify apps: cannot reach NATS at nats://u:***@127.0.0.1:1 (nats: "
                             "no servers available for connection); set NATS_URL (for the dev "
                             "stack: source .unify/dev/env)\n")
