"""``python -m registry_admin`` as a process: ``--help`` prints the usage and exits 0 without starting
anything; a bad ``UNIFY_LOG_LEVEL`` or ``UNIFY_LOG_FORMAT`` is one
line naming the variable and exit status 2, like every settings error."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m registry_admin *args`` with only ``env`` of Unify's, Consul's and NATS's variables
    (NATS at a port where nothing listens: a process that started would hang, not pass)."""
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("UNIFY_", "NATS_", "CONSUL_"))}
    clean.update({"NATS_URL": "nats://127.0.0.1:1", "CONSUL_HTTP_ADDR": "127.0.0.1:1", **env})
    return subprocess.run([sys.executable, "-m", "registry_admin", *args], env=clean, capture_output=True,
                          text=True, timeout=15)


@pytest.mark.parametrize(("variable", "value", "allowed"), [
    ("UNIFY_LOG_LEVEL", "LOUD", "debug, info, warning, error, critical"),
    ("UNIFY_LOG_FORMAT", "xml", "text, json"),
])
def test_a_bad_log_setting_is_one_line_naming_the_variable_and_status_2(variable, value, allowed):
    done = _run(**{variable: value})
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"registry-admin: {variable} must be one of {allowed}; got {value!r}\n"


@pytest.mark.parametrize(("variable", "value", "line"), [
    ("UNIFY_REGISTRY_NOTIFY_TOKEN_FILE", "/nope",
     "UNIFY_REGISTRY_NOTIFY_TOKEN_FILE: cannot read /nope: FileNotFoundError"),
    ("UNIFY_REGISTRY_LISTEN_PORT", "99999", "UNIFY_REGISTRY_LISTEN_PORT must be 1-65535, got 99999"),
])
def test_a_bad_setting_is_one_line_naming_the_variable_and_status_2(variable, value, line):
    done = _run(**{variable: value})
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"registry-admin: {line}\n")


def test_help_prints_the_usage_and_exits_0_without_starting():
    # started, it would wait for the NATS that is not there until the timeout
    done = _run("--help")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("usage: unify-registry-admin [-h]\n\n"), done.stdout
