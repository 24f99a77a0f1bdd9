"""One exit-status convention across the CLI (1 a runtime failure, 2 usage or settings), and
`unify images build` without an engine, run as processes."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str], python_flags: tuple[str, ...] = ()):
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run([sys.executable, *python_flags, "-m", "unify_cli.main", *args],
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_events_tail_unreachable_is_a_runtime_failure_and_masked():
    result = _run(["events", "tail"], {"NATS_URL": "nats://u:n4ts-pw@127.0.0.1:1"})
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", "unify: cannot reach NATS at nats://u:***@127.0.0.1:1 (nats: no servers "
               "available for connection); set NATS_URL (for the dev stack: source "
               ".unify/dev/env)\n")


def test_dns_list_unreachable_is_a_runtime_failure():
    result = _run(["dns", "list"], {"NATS_URL": "nats://u:n4ts-pw@127.0.0.1:1"})
    assert (result.returncode, result.stdout) == (1, "")
    assert "n4ts-pw" not in result.stderr and "nats://u:***@127.0.0.1:1" in result.stderr


def test_images_build_without_an_engine_is_one_line(tmp_path):
    sock = tmp_path / "nope.sock"
    result = _run(["images", "build", "--base", "x"], {"DOCKER_HOST": f"unix://{sock}"})
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", f"unify images build: no container engine at DOCKER_HOST=unix://{sock} (no "
               "such socket); set DOCKER_HOST to the engine's socket or tcp:// address\n")


def test_images_build_masks_a_password_in_docker_host():
    result = _run(["images", "build", "--base", "x"],
                  {"DOCKER_HOST": "tcp://u:d0cker-pw@127.0.0.1:3"})
    assert result.returncode == 1
    assert "d0cker-pw" not in result.stderr
    assert result.stderr.startswith("unify images build: no container engine at "
                                    "DOCKER_HOST=tcp://u:***@127.0.0.1:3 (")


def test_a_missing_extra_is_a_runtime_failure():
    # -S: no site .pth files, so of the project only the CLI and unify-common are importable
    path = [str(ROOT / "cli" / "src"), str(ROOT / "libs" / "unify-common" / "src"),
            *site.getsitepackages()]
    env = {"PYTHONPATH": os.pathsep.join(path)}
    apps = _run(["apps", "ls"], env, ("-S",))
    registry = _run(["registry", "ls"], env, ("-S",))
    assert (apps.returncode, apps.stderr) == (
        1, "unify apps: needs the wireline package: pip install 'unify-cli[apps]'\n")
    assert (registry.returncode, registry.stderr) == (
        1, "unify registry: needs the registry_admin package: pip install "
           "'unify-cli[registry]'\n")


def test_help_states_the_exit_statuses():
    result = _run(["--help"], {"COLUMNS": "200"})
    assert result.returncode == 0
    assert ("Exit status: 0 success; 1 a runtime failure (NATS, a registry or the engine "
            "unreachable, a refusal, a missing extra); 2 bad arguments or settings."
            in " ".join(result.stdout.split()))


def test_images_build_of_an_unknown_image_is_a_usage_error(tmp_path):
    result = _run(["images", "build", "nosuch"], {"DOCKER_HOST": f"unix://{tmp_path}/x.sock"})
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("unify images build: unknown image nosuch; known: "
                                    "consul-bridge, switchboard, dns411,"), result.stderr
