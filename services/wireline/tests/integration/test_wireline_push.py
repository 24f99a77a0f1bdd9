"""The original example on real parts: push -> running with the pinned digest; a code change
-> new digest; a failing healthcheck -> the push fails and the old release still runs;
rollback; scale (CLI and SCALE=); another branch is stored only; DEPLOY=N -> gone."""

from __future__ import annotations

import asyncio

import pytest
from wireline_support import head, make_app, run, service_labels, service_state, stack_services

from unify_common.events import BuildOutput, DeployFailed, ReleaseRecorded, decode_event
from unify_common.natsio import connect_nats
from unify_common.settings import CommonSettings


async def _events(url: str, subject: str) -> list:
    nc = await connect_nats(CommonSettings(nats_urls=(url,)), name="t", fail_fast=True)
    try:
        sub = await nc.jetstream().subscribe(subject, ordered_consumer=True)
        events = []
        while True:
            try:
                msg = await sub.next_msg(timeout=1)
            except Exception:
                return events
            events.append(decode_event(msg.data))
    finally:
        await nc.close()


def _remote(result) -> list[str]:
    return [line[len("remote: "):].rstrip() for line in result.stderr.splitlines()
            if line.startswith("remote: ")]


@pytest.mark.timeout(420)
def test_push_change_fail_rollback_scale_remove(wireline, wl_nats, wl_registry, tmp_path):
    alice = wireline.new_key("alice-push", apps="ticker")
    app = make_app(tmp_path / "ticker", version="1")
    sha1 = head(app)

    # 1. first push: built, pushed, deployed pinned by digest
    result = wireline.push(app, alice, "ticker")
    assert result.returncode == 0, result.stderr
    remote = _remote(result)
    assert remote[0] == f"release 1 of ticker: {sha1[:12]} by alice-push"
    assert f"building web -> {wl_registry.addr}/ticker/web:{sha1}" in remote
    assert any(line.startswith("Step 1/4 : FROM unify-local/debian:bookworm")
               for line in remote)
    assert remote[-1].startswith("deployed release 1 of ticker (build ")
    releases = wireline.releases("ticker")
    assert [(r["number"], r["kind"], r["outcome"], r["sha"], r["pusher"]) for r in releases] \
        == [(1, "push", "deployed", sha1, "alice-push")]
    fingerprint = run(["ssh-keygen", "-lf", str(alice.path) + ".pub"]).stdout.split()[1]
    assert releases[0]["fingerprint"] == fingerprint
    image1 = releases[0]["images"]["web"]
    assert image1.startswith(f"{wl_registry.addr}/ticker/web:{sha1}@sha256:")
    assert service_state("ticker") == (image1, 1)
    assert releases[0]["build_s"] > 0 and releases[0]["deploy_s"] > 0
    log = wireline.unify("apps", "logs", "ticker").stdout
    assert log.splitlines()[0] == remote[0] and "Step 4/4" in log

    # 2. a code change: a new digest runs
    make_app(app, version="2")
    sha2 = head(app)
    result = wireline.push(app, alice, "ticker")
    assert result.returncode == 0, result.stderr
    image2 = wireline.releases("ticker")[-1]["images"]["web"]
    assert image2.startswith(f"{wl_registry.addr}/ticker/web:{sha2}@sha256:")
    assert image2.split("@")[1] != image1.split("@")[1]
    assert service_state("ticker") == (image2, 1)

    # 3. a failing healthcheck: Swarm rolls back, the push fails, release 2 still runs
    make_app(app, version="3", healthy=False)
    sha3 = head(app)
    result = wireline.push(app, alice, "ticker")
    assert result.returncode != 0
    failure = [line for line in _remote(result) if line.startswith("deploy failed: ")]
    assert failure == [failure[0]] and "Swarm rolled the update back" in failure[0], \
        result.stderr
    assert ("!\trefs/heads/main:refs/heads/main\t[remote rejected] (pre-receive hook declined)"
            in result.stdout.splitlines())
    assert service_state("ticker") == (image2, 1)
    last = wireline.releases("ticker")[-1]
    assert (last["number"], last["outcome"], last["sha"]) == (3, "failed", sha3)
    failed = [e for e in asyncio.run(_events(wl_nats.url, "unify.apps.ticker.deploy.failed"))
              if isinstance(e, DeployFailed)]
    assert [(e.number, e.sha, e.stage) for e in failed] == [(3, sha3, "health")]
    # the branch still points at the deployed commit
    assert run(["git", "--git-dir", str(wireline.data_dir / "repos" / "ticker.git"),
                "rev-parse", "main"]).stdout.strip() == sha2

    # 4. rollback to release 1: its digest runs again, no rebuild
    result = wireline.unify("apps", "rollback", "ticker", "1")
    assert result.returncode == 0, result.stderr
    assert service_state("ticker") == (image1, 1)
    last = wireline.releases("ticker")[-1]
    assert (last["number"], last["kind"], last["outcome"], last["rollback_of"],
            last["images"]) == (4, "rollback", "deployed", 1, {"web": image1})
    labels = service_labels("ticker")
    assert (labels["unify.wireline.release"], labels["unify.wireline.sha"]) == ("4", sha1)

    # 5. scale from the CLI, then SCALE= in wireline.ini with a push (back to sha2's code)
    result = wireline.unify("apps", "scale", "ticker", "web=2")
    assert result.returncode == 0, result.stderr
    assert service_state("ticker") == (image1, 2)
    make_app(app, version="2", ini="SCALE=web=3\n")
    result = wireline.push(app, alice, "ticker")
    assert result.returncode == 0, result.stderr
    release = wireline.releases("ticker")[-1]
    assert release["replicas"] == {"web": 3}
    assert service_state("ticker") == (release["images"]["web"], 3)
    listing = wireline.unify("apps", "ls").stdout.splitlines()
    assert listing[1].split()[:3] == ["ticker", "6", "deployed"]

    # BUILD=N reuses the last deployed images; PUSH=N builds only
    make_app(app, version="2", ini="BUILD=N\nSCALE=web=1\n")
    result = wireline.push(app, alice, "ticker")
    assert result.returncode == 0, result.stderr
    assert not any(line.startswith("building ") for line in _remote(result))
    reused = wireline.releases("ticker")[-1]
    assert (reused["number"], reused["images"], reused["replicas"]) == (
        7, release["images"], {"web": 1})
    assert service_state("ticker") == (release["images"]["web"], 1)
    make_app(app, version="4", ini="PUSH=N\n")
    result = wireline.push(app, alice, "ticker")
    assert result.returncode == 0, result.stderr
    assert _remote(result)[-1] == "PUSH=N: built, nothing pushed or deployed"
    assert wireline.releases("ticker")[-1]["outcome"] == "built"
    assert service_state("ticker") == (release["images"]["web"], 1)

    # 6. another branch is stored, not deployed
    run(["git", "-C", str(app), "branch", "-f", "feature"])
    result = wireline.push(app, alice, "ticker", ref="feature")
    assert result.returncode == 0
    assert _remote(result) == ["refs/heads/feature stored, not deployed (the deploy branch "
                               "is main)"]
    assert len(wireline.releases("ticker")) == 8

    # 7. DEPLOY=N: the stack is removed
    make_app(app, version="2", ini="DEPLOY=N\n")
    result = wireline.push(app, alice, "ticker")
    assert result.returncode == 0, result.stderr
    assert "DEPLOY=N: stack wl-test-ticker removed" in _remote(result)
    assert stack_services("ticker") == []
    assert wireline.releases("ticker")[-1]["outcome"] == "removed"
    recorded = [e.release.number for e in asyncio.run(
        _events(wl_nats.url, "unify.apps.ticker.release")) if isinstance(e, ReleaseRecorded)]
    assert recorded == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    # the build output events of release 1 put back together are its kept log
    chunks = sorted((e.first_line, e.lines) for e in asyncio.run(
        _events(wl_nats.url, "unify.apps.ticker.build"))
        if isinstance(e, BuildOutput) and e.number == 1)
    lines = [line for _, chunk in chunks for line in chunk]
    assert [first for first, _ in chunks] == list(range(0, len(lines), 20))[:len(chunks)]
    assert lines == wireline.unify("apps", "logs", "ticker", "--release", "1"
                                   ).stdout.splitlines()
