"""Issue 11's example through the whole suite on real parts: ``git push`` over ssh as the
``git`` user into wireline's image (its sshd, the Engine's ``docker build``, a Debian
``docker-registry``, ``docker stack deploy`` on the Swarm), registrator putting the tasks'
host-mode ports into the dev stack's Consul, consul-bridge, NATS JetStream, switchboard with
HAProxy and dns411 with dnsmasq.

push -> served through HAProxy by Host header and resolved by dnsmasq; the ``git`` user gets
no shell and no other command, root cannot log in, and inside the image ``git`` reads neither
the host key nor the Docker socket; ``SCALE`` -> answers from both tasks; a code change
pushed under a bounded request loop -> the new version, not one failed request; a push
failing its healthcheck -> the push fails and the old release still serves; ``unify apps
rollback`` -> the previous release's digest runs and is served; ``DEPLOY=N`` -> the name
neither routes nor resolves.
"""

from __future__ import annotations

import collections
import os
import subprocess
import time

import docker
import pytest

from tests.fixtures.engine import docker_host
from unify_testkit.devstack.stack import DevStack

from .wireline_flow_support import (
    APP,
    DOMAIN,
    SERVICE,
    consul_passing,
    dns_answer,
    http_get,
    returns,
    start_flow,
    task_hosts,
    wait_until,
    write_app,
)

pytestmark = pytest.mark.timeout(900)

HOST = f"ticker.{DOMAIN}"
LOOP_MAX_REQUESTS = 20000
LOOP_MAX_SECONDS = 180.0
NO_SHELL = ("wireline: interactive shells are not allowed; push with "
            "`git push ssh://<host>/<app> main`")


@pytest.fixture(scope="module")
def engine():
    client = docker.APIClient(base_url=docker_host(), version="1.41", timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def suite(tmp_path_factory, suite_images):
    """(dev stack, registry, wireline from its image) with a registrator on the stack's
    Consul."""
    flow = start_flow(tmp_path_factory.mktemp("wl-e2e"), image=suite_images["wireline"].tag,
                      docker_host=docker_host(),
                      wireline_env={"UNIFY_WIRELINE_DEPLOY_TIMEOUT": "120"})
    try:
        yield flow.stack, flow.registry, flow.wireline
    finally:
        flow.stop()


def _answers(port: int, count: int) -> list[str]:
    out = []
    for _ in range(count):
        status, body = http_get(port, HOST)
        assert status == 200, (status, body)
        out.append(body)
    return out


def _hosts_of(bodies: list[str], version: str) -> list[str]:
    """The container hostname of each answer ``"<version> <hostname>\\n"`` (asserts the
    version of each)."""
    hosts = []
    for body in bodies:
        assert body.startswith(f"{version} ") and body.endswith("\n"), body
        hosts.append(body[len(version) + 1:-1])
    return hosts


def _serving(engine, stack: DevStack, image: str, version: str, replicas: int) -> set[str]:
    """Wait until ``replicas`` tasks run ``image``, Consul has exactly their ports passing and
    HAProxy's answers come from every one of them (and only them); their hostnames."""
    def tasks() -> dict:
        hosts = task_hosts(engine, SERVICE)
        assert len(hosts) == replicas and {i for i, _ in hosts.values()} == {image}, hosts
        return hosts

    hosts = wait_until(tasks, returns, timeout=60, what=f"{replicas} tasks of {image}")
    ports = sorted(("127.0.0.1", port) for _, port in hosts.values())

    def consul() -> None:
        assert consul_passing(stack.consul.http_addr, "ticker") == ports

    wait_until(consul, returns, timeout=60, what="passing instances in Consul")

    def answers() -> None:
        assert set(_hosts_of(_answers(stack.http_port, 4 * replicas), version)) == set(hosts)

    wait_until(answers, returns, timeout=60, what=f"{version} answered by every task")
    return set(hosts)


def _remote(output: str) -> list[str]:
    return [line[len("remote: "):].rstrip() for line in output.splitlines()
            if line.startswith("remote: ")]


def test_push_scale_update_fail_rollback_remove(suite, engine, tmp_path):
    stack, registry, wireline = suite
    started = time.monotonic()
    alice = wireline.new_key("alice-e2e", apps=APP)
    repo = tmp_path / "ticker"
    port = stack.http_port

    # 1. push: served through HAProxy by Host header, resolved by dnsmasq
    sha1 = write_app(repo, version="v1", domain=DOMAIN, http_port=port)
    result = wireline.push(repo, alice, APP)
    assert result.returncode == 0, result.stderr
    release1 = wireline.releases(APP)[-1]
    image1 = release1["images"]["web"]
    assert image1.startswith(f"{registry.addr}/{APP}/web:{sha1}@sha256:")
    (only,) = _serving(engine, stack, image1, "v1", 1)
    assert _answers(port, 3) == [f"v1 {only}\n"] * 3
    records = ("NOERROR", [f"haproxy.{DOMAIN}. 30 IN A 127.0.0.1",
                           f"{HOST}. 30 IN CNAME haproxy.{DOMAIN}."])
    assert wait_until(lambda: _equal(dns_answer(stack.dns_port, HOST), records), returns,
                      timeout=30, what="ticker resolves") == records
    print(f"served after {time.monotonic() - started:.1f} s")
    listed = subprocess.run(["git", "ls-remote", wireline.url(APP)], capture_output=True,
                            text=True, timeout=30, check=False,
                            env={**os.environ, "GIT_SSH_COMMAND": wireline.ssh_command(alice)})
    assert (listed.returncode, listed.stdout) == (0, f"{sha1}\tHEAD\n{sha1}\trefs/heads/main\n")
    _git_user_is_confined(wireline, alice)

    # 2. SCALE=web=2 in wireline.ini + push: both tasks answer, in turn
    write_app(repo, version="v1", domain=DOMAIN, http_port=port, ini='SCALE="web=2"\n')
    result = wireline.push(repo, alice, APP)
    assert result.returncode == 0, result.stderr
    release2 = wireline.releases(APP)[-1]
    assert (release2["number"], release2["replicas"]) == (2, {"web": 2})
    image2 = release2["images"]["web"]
    hosts = _serving(engine, stack, image2, "v1", 2)
    counts = collections.Counter(_hosts_of(_answers(port, 20), "v1"))
    assert counts == {host: 10 for host in hosts}

    # 3. a code change pushed under a bounded request loop: the new version, 0 failures
    sha3 = write_app(repo, version="v2", domain=DOMAIN, http_port=port, ini="SCALE=web=2\n")
    push = wireline.push_async(repo, alice, APP)
    sent, served, failed, output = _requests_during(push, port, ("v1", "v2"), "update")
    assert push.returncode == 0, output
    assert dict(failed) == {}
    assert sent == served["v1"] + served["v2"] and served["v2"] > 0
    release3 = wireline.releases(APP)[-1]
    image3 = release3["images"]["web"]
    assert image3.startswith(f"{registry.addr}/{APP}/web:{sha3}@sha256:")
    assert image3.split("@")[1] != image2.split("@")[1]
    hosts3 = _serving(engine, stack, image3, "v2", 2)
    assert not hosts3 & hosts

    # 4. a push whose healthcheck fails: the push fails, release 3 still serves
    sha4 = write_app(repo, version="v3", domain=DOMAIN, http_port=port, healthy=False,
                     ini="SCALE=web=2\n")
    push = wireline.push_async(repo, alice, APP)
    # v3 never passes its Consul check: HAProxy keeps sending every request to release 3
    sent, served, failed, output = _requests_during(push, port, ("v2", "v3"), "failed push")
    assert push.returncode != 0, output
    failure = [line for line in _remote(output) if line.startswith("deploy failed: ")]
    assert len(failure) == 1 and "Swarm rolled the update back" in failure[0], output
    assert (dict(failed), served["v2"]) == ({}, sent)
    release4 = wireline.releases(APP)[-1]
    assert (release4["number"], release4["outcome"], release4["sha"]) == (4, "failed", sha4)
    assert _serving(engine, stack, image3, "v2", 2) == hosts3
    assert set(_answers(port, 10)) == {f"v2 {host}\n" for host in hosts3}

    # 5. rollback to the previous release: its digest runs again and is served
    result = wireline.unify("apps", "rollback", APP)
    assert result.returncode == 0, result.stdout + result.stderr
    release5 = wireline.releases(APP)[-1]
    assert (release5["number"], release5["kind"], release5["outcome"],
            release5["rollback_of"], release5["images"]) == (
        5, "rollback", "deployed", 2, {"web": image2})
    hosts5 = _serving(engine, stack, image2, "v1", 2)
    assert not hosts5 & (hosts | hosts3)  # new tasks of the old digest

    # 6. DEPLOY=N + push: the name no longer routes and no longer resolves
    write_app(repo, version="v2", domain=DOMAIN, http_port=port, ini="DEPLOY=N\n")
    result = wireline.push(repo, alice, APP)
    assert result.returncode == 0, result.stderr
    assert f"DEPLOY=N: stack {APP} removed" in _remote(result.stderr)
    assert wireline.releases(APP)[-1]["outcome"] == "removed"
    assert engine.services(filters={"name": SERVICE}) == []
    wait_until(lambda: _equal(consul_passing(stack.consul.http_addr, "ticker"), []), returns,
               timeout=30, what="ticker gone from Consul")
    wait_until(lambda: _refused(port), returns, timeout=60, what="no route for ticker")
    gone = ("NXDOMAIN", [])
    assert wait_until(lambda: _equal(dns_answer(stack.dns_port, HOST), gone), returns,
                      timeout=30, what="ticker no longer resolves") == gone
    print(f"whole flow: {time.monotonic() - started:.1f} s")


def _git_user_is_confined(wireline, alice) -> None:
    """The push above came in as ``git`` (the image's only SSH user), and so did the
    ``git ls-remote`` (``git-upload-pack``). Over SSH that user runs
    nothing but wireline's forced command, and root cannot log in at all; inside the image it
    owns the repositories (the service handed them over) but cannot read the host key, write
    sshd's or wireline's files, or use the Docker socket."""
    assert wireline.user == "git"
    for args, message in (([], NO_SHELL), (["-t"], NO_SHELL),
                          (["cat /var/lib/wireline/sshd/host_ed25519"],
                           "wireline: refused: only git-receive-pack and git-upload-pack "
                           "are allowed, not 'cat'")):
        result = wireline.ssh(alice, *args)
        assert (result.returncode, result.stdout, result.stderr.splitlines()[-1:]) == (
            1, "", [message]), (args, result)
    as_root = subprocess.run([*wireline.ssh_command(alice).split(), "root@127.0.0.1",
                              f"git-receive-pack '{APP}'"], capture_output=True, text=True,
                             timeout=30, check=False)
    assert as_root.returncode == 255 and "Permission denied (publickey)" in as_root.stderr
    checks = ("id -un; cd /var/lib/wireline; "
              "for f in sshd/host_ed25519 sshd/authorized_keys; do "
              "  [ -r $f ] && echo \"$f readable\"; done; "
              "for f in sshd sshd/authorized_keys sshd/sshd_config shell.json hooks "
              "  hooks/pre-receive /var/run/docker.sock; do "
              "  [ -w $f ] && echo \"$f writable\"; done; "
              f"[ -w repos/{APP}.git/refs/heads ] && echo 'repos writable'; "
              "cat sshd/host_ed25519 2>&1 >/dev/null")
    assert wireline.process.exec(checks, user="git") == (1, (
        "git\nsshd/authorized_keys readable\nrepos writable\n"
        "cat: sshd/host_ed25519: Permission denied\n"))


def _requests_during(push, port: int, versions: tuple[str, ...], what: str):
    """GET ``ticker`` through HAProxy (one new connection each, 10 ms apart) while ``push``
    (a ``git push`` process) runs and 3 s after it ended, at most ``LOOP_MAX_REQUESTS``
    requests and ``LOOP_MAX_SECONDS`` s. A request fails when the connection fails, the
    status is not 200 or the body's version is not in ``versions``. Returns ``(sent,
    served by version, failed by reason, the push's output)``; asserts the push ended."""
    started = time.monotonic()
    sent, failed, served = 0, collections.Counter(), collections.Counter()
    pushed_at = None
    try:
        while sent < LOOP_MAX_REQUESTS and time.monotonic() - started < LOOP_MAX_SECONDS:
            if pushed_at is None and push.poll() is not None:
                pushed_at = time.monotonic()
            if pushed_at is not None and time.monotonic() - pushed_at > 3:
                break
            sent += 1
            try:
                status, body = http_get(port, HOST)
            except OSError as err:
                failed[type(err).__name__] += 1
            else:
                version = body.split(" ", 1)[0]
                if status != 200 or version not in versions:
                    failed[f"{status} {body[:40]!r}"] += 1
                else:
                    served[version] += 1
            time.sleep(0.01)
    finally:
        output = push.communicate(timeout=240)[0]
    print(f"{what}: {sent} requests in {time.monotonic() - started:.1f} s, "
          f"served {dict(served)}, failed {dict(failed)}")
    assert pushed_at is not None, f"push not finished within {LOOP_MAX_SECONDS:g} s"
    return sent, served, failed, output


def _equal(actual, expected):
    assert actual == expected, actual
    return actual


def _refused(port: int) -> None:
    """HAProxy closed the vhost's frontend (no other route uses ``port``)."""
    try:
        result = http_get(port, HOST)
    except ConnectionRefusedError:
        return
    raise AssertionError(f"still answered: {result}")
