"""Every refused SSH input, through a real sshd and the forced command."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess

import pytest
from wireline_support import make_app, run

from unify_common.events import ErrorEvent, decode_event
from unify_common.natsio import connect_nats
from unify_common.settings import CommonSettings
from unify_testkit import returns, wait_until

INVALID = ("wireline: invalid app name {!r}: use a lowercase letter, then up to 62 lowercase "
           "letters, digits or '-' (not ending with '-')")
ONE_NAME = ("wireline: refused: git-receive-pack takes exactly one quoted app name, e.g. "
            "git-receive-pack 'myapp'")


async def _errors(url: str) -> list[ErrorEvent]:
    nc = await connect_nats(CommonSettings(nats_urls=(url,)), name="t", fail_fast=True)
    try:
        js = nc.jetstream()
        sub = await js.subscribe("unify.error.wireline", ordered_consumer=True)
        events = []
        while True:
            try:
                msg = await sub.next_msg(timeout=1)
            except Exception:
                return events
            events.append(decode_event(msg.data))
    finally:
        await nc.close()


@pytest.mark.timeout(120)
def test_refused_commands(wireline, wl_nats, tmp_path):
    alice = wireline.new_key("alice", apps="ticker")
    cases = [
        ([], "wireline: interactive shells are not allowed; push with "
             "`git push ssh://<host>/<app> main`"),
        (["-t"], "wireline: interactive shells are not allowed; push with "
                 "`git push ssh://<host>/<app> main`"),
        (["git-receive-pack '../x'"], INVALID.format("../x")),
        (["git-receive-pack 'tick\"er'"], INVALID.format('tick"er')),
        (["git-receive-pack 'ticker'; id"], ONE_NAME),
        (["git-receive-pack 'ticker' && git-upload-pack 'other'"], ONE_NAME),
        (["git-receive-pack 'ticker'\ngit-upload-pack 'x'"],
         "wireline: refused: one git command per connection, on one line"),
        (["id"], "wireline: refused: only git-receive-pack and git-upload-pack are allowed, "
                 "not 'id'"),
        (["git-receive-pack 'other'"], "wireline: key alice may not use app other"),
        (["git-upload-pack 'ticker'"], "wireline: no app ticker (push to it first)"),
    ]
    for args, message in cases:
        result = wireline.ssh(alice, *args)
        assert result.returncode == 1, (args, result)
        assert message in result.stderr.splitlines(), (args, result.stderr)
        assert result.stdout == ""
    # port forwarding: sshd refuses the request itself (restrict + DisableForwarding)
    result = wireline.ssh(alice, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9",
                          "git-upload-pack 'ticker'")
    assert result.returncode == 255
    assert "remote port forwarding failed" in result.stderr
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    local = listener.getsockname()[1]
    listener.close()
    forward = subprocess.Popen(
        wireline.ssh_command(alice).replace("LogLevel=ERROR", "LogLevel=INFO").split()
        + ["-N", "-L", f"{local}:127.0.0.1:{wireline.port}",
                                               "root@127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def through_the_forward() -> bytes:
            with socket.create_connection(("127.0.0.1", local), timeout=2) as conn:
                conn.settimeout(3)
                return conn.recv(100)

        # the local listener appears once ssh is logged in
        data = wait_until(through_the_forward, returns, timeout=10, interval=0.1,
                          retry_on=(ConnectionRefusedError, TimeoutError),
                          what=f"ssh's forwarding listener on port {local}")
        assert data == b""  # the channel was refused: no SSH banner came through
    finally:
        forward.terminate()
        _, err = forward.communicate(timeout=10)
    assert "administratively prohibited" in err, err
    # a push to an app the key may not use fails at the git client
    app = make_app(tmp_path / "app", version="1")
    result = wireline.push(app, alice, "other")
    assert result.returncode != 0
    assert "wireline: key alice may not use app other" in result.stderr
    assert not (wireline.data_dir / "repos" / "other.git").exists()
    assert not (wireline.data_dir / "repos" / "x.git").exists()
    # each refusal is logged and published as an error event
    log_lines = [json.loads(line) if line.startswith("{") else line for line in
                 (wireline.data_dir / "log" / "shell.log").read_text().splitlines()]
    assert sum("refused" in str(line) for line in log_lines) >= len(cases) + 1
    events = asyncio.run(_errors(wl_nats.url))
    reasons = [e.message for e in events if e.reason == "refused-ssh-command"]
    assert reasons.count("key alice may not use app other") == 2
    assert "refused: only git-receive-pack and git-upload-pack are allowed, not 'id'" in reasons
    assert all(e.instance_id == "alice" for e in events)


def test_unknown_key_is_not_let_in(wireline):
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wireline.workdir / "stray")])
    from wireline_support import Pusher
    stray = Pusher("stray", wireline.workdir / "stray", "")
    result = wireline.ssh(stray, "git-receive-pack 'ticker'")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_keys_cli_lists_and_removes(wireline):
    bob = wireline.new_key("bob", apps="web,api")
    listing = wireline.unify("apps", "keys", "ls").stdout.splitlines()
    fingerprint = run(["ssh-keygen", "-lf", str(bob.path) + ".pub"]).stdout.split()[1]
    row = next(line.split() for line in listing if line.startswith("bob "))
    assert row[:3] == ["bob", fingerprint, "api,web"]
    refused = wireline.unify("apps", "keys", "add", "bad", "ssh-ed25519 AAAA", "--all",
                             check=False)
    assert refused.returncode == 2
    assert refused.stderr == "unify apps: not a valid ssh-ed25519 key: " \
        + refused.stderr.split("key: ", 1)[1]
    assert wireline.unify("apps", "keys", "rm", "bob").stdout == "removed bob\n"
    keys_file = wireline.data_dir / "sshd" / "authorized_keys"
    from unify_testkit import wait_until
    wait_until(lambda: "--key bob " not in keys_file.read_text(), timeout=20,
               what="bob removed from authorized_keys")
    result = wireline.ssh(bob, "git-receive-pack 'web'")
    assert result.returncode == 255


WIRELINE_ENV = {"UNIFY_WIRELINE_BUILD_TIMEOUT": "5"}


@pytest.mark.timeout(120)
def test_refused_files_and_build_time_limit(wireline, wl_nats, tmp_path):
    carol = wireline.new_key("carol", apps="hostile,slow")
    app = make_app(tmp_path / "hostile", version="1", pair=False)
    compose = json.loads((app / "compose.yaml").read_text())
    compose["services"]["web"]["privileged"] = True
    (app / "compose.yaml").write_text(json.dumps(compose))
    (app / "wireline.ini").write_text("REGISTRY=evil.example:5000\n")
    run(["git", "-C", str(app), "add", "-A"])
    run(["git", "-C", str(app), "commit", "-q", "-m", "hostile"])
    result = wireline.push(app, carol, "hostile")
    assert result.returncode != 0
    remote = [line[8:].rstrip() for line in result.stderr.splitlines()
              if line.startswith("remote: ")]
    assert remote[1:] == [
        "wireline.ini: REGISTRY is set by the operator; ignored",
        "deploy failed: service 'web': key 'privileged' is not allowed by wireline"]
    events = asyncio.run(_errors(wl_nats.url))
    assert [(e.reason, e.message, e.service) for e in events if e.reason == "invalid-app"] == [
        ("invalid-app", "hostile: service 'web': key 'privileged' is not allowed by wireline",
         "hostile")]

    slow = make_app(tmp_path / "slow", version="1")
    dockerfile = (slow / "Dockerfile").read_text().replace(
        "WORKDIR /srv\n", f"WORKDIR /srv\nRUN echo {tmp_path.name} && sleep 60\n")
    (slow / "Dockerfile").write_text(dockerfile)
    run(["git", "-C", str(slow), "commit", "-q", "-am", "slow"])
    result = wireline.push(slow, carol, "slow")
    assert result.returncode != 0
    assert "remote: deploy failed: build time limit of 5 s reached" in result.stderr
    release = wireline.releases("slow")[-1]
    assert (release["outcome"], release["message"]) == ("failed",
                                                         "build time limit of 5 s reached")
    assert 5 <= release["build_s"] < 8


@pytest.mark.timeout(120)
def test_first_deploy_failing_its_healthcheck(wireline, wl_nats, tmp_path):
    dave = wireline.new_key("dave", apps="sick")
    app = make_app(tmp_path / "sick", version="1", healthy=False)
    deploy = json.loads((app / "deploy.yaml").read_text())
    deploy["services"]["web"]["deploy"] = {"restart_policy": {"delay": "1s"}}
    (app / "deploy.yaml").write_text(json.dumps(deploy))
    run(["git", "-C", str(app), "commit", "-q", "-am", "restart quickly"])
    result = wireline.push(app, dave, "sick")
    assert result.returncode != 0
    failure = [line for line in result.stderr.splitlines()
               if line.startswith("remote: deploy failed: ")]
    assert len(failure) == 1
    assert failure[0].startswith("remote: deploy failed: wl-test-sick_web: 2 tasks failed "
                                 "(last: task: non-zero exit (143): dockerexec: unhealthy "
                                 "container)"), failure
    release = wireline.releases("sick")[-1]
    assert (release["number"], release["outcome"]) == (1, "failed")
    assert not (wireline.data_dir / "repos" / "sick.git" / "refs" / "heads" / "main").exists()
