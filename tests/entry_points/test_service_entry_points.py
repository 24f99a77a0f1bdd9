"""Every service's ``python -m <module>`` as a process, in one table: ``--help`` prints the
usage and exits 0 without starting anything; a bad setting (log level and format for all, the
ranges and secret files each service checks) is one line on stderr naming the variable, and
exit status 2. NATS and Consul point at port 1, where nothing listens: a process that started
anyway would wait there until the timeout, not pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: module -> (the name its lines start with, the usage line of ``--help``)
SERVICES = {
    "consul_bridge": ("consul-bridge", "usage: unify-consul-bridge [-h]"),
    "switchboard": ("switchboard", "usage: unify-switchboard [-h]"),
    "dns411": ("dns411", "usage: unify-dns411 [-h] [--dry-run]"),
    "registrator": ("registrator", "usage: unify-registrator [-h] [--once]"),
    "registry_admin": ("registry-admin", "usage: unify-registry-admin [-h]"),
    "wireline": ("wireline", "usage: unify-wireline [-h]"),
}

#: (module, variable, value, the line after "<name>: ")
BAD_SETTINGS = [
    ("consul_bridge", "UNIFY_BRIDGE_REMOVAL_RATIO", "2",
     "UNIFY_BRIDGE_REMOVAL_RATIO must be 0-1, got 2"),
    ("consul_bridge", "UNIFY_STREAM_MAX_AGE", "-5",
     "UNIFY_STREAM_MAX_AGE must be 120 or more, got -5"),
    ("consul_bridge", "CONSUL_HTTP_ADDR", "http://[::1",
     "CONSUL_HTTP_ADDR must be host, host:port or [v6]:port, optionally after http:// or "
     "https://, got '[::1'"),
    ("dns411", "UNIFY_DNSMASQ_PORT", "70000", "UNIFY_DNSMASQ_PORT must be 1-65535, got 70000"),
    ("registry_admin", "UNIFY_REGISTRY_NOTIFY_TOKEN_FILE", "/nope",
     "UNIFY_REGISTRY_NOTIFY_TOKEN_FILE: cannot read /nope: FileNotFoundError"),
    ("registry_admin", "UNIFY_REGISTRY_LISTEN_PORT", "99999",
     "UNIFY_REGISTRY_LISTEN_PORT must be 1-65535, got 99999"),
] + [(module, variable, value, f"{variable} must be one of {allowed}; got {value!r}")
     for module in SERVICES
     for variable, value, allowed in (
         ("UNIFY_LOG_LEVEL", "LOUD", "debug, info, warning, error, critical"),
         ("UNIFY_LOG_FORMAT", "xml", "text, json"))]


def _run(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> *args`` with only ``env`` of Unify's, Consul's and NATS's
    variables."""
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("UNIFY_", "NATS_", "CONSUL_"))}
    clean.update({"NATS_URL": "nats://127.0.0.1:1", "CONSUL_HTTP_ADDR": "127.0.0.1:1", **env})
    return subprocess.run([sys.executable, "-m", module, *args], env=clean,
                          capture_output=True, text=True, timeout=15)


@pytest.mark.parametrize("module", list(SERVICES))
def test_help_prints_the_usage_and_exits_0_without_starting(module, tmp_path):
    data = tmp_path / "data"  # wireline would set up sshd and its hook there
    done = _run(module, "--help", UNIFY_WIRELINE_DATA_DIR=str(data))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(SERVICES[module][1] + "\n\n"), done.stdout
    assert not Path(data).exists()


@pytest.mark.parametrize(("module", "variable", "value", "line"), BAD_SETTINGS,
                         ids=[f"{m}-{v}" for m, v, _, _ in BAD_SETTINGS])
def test_a_bad_setting_is_one_line_naming_the_variable_and_status_2(module, variable, value,
                                                                    line):
    done = _run(module, **{variable: value})
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "", f"{SERVICES[module][0]}: {line}\n")
