"""One deploy per app: the NATS KV lock (wait limit, TTL expiry of a killed holder) and two
concurrent pushes / a wireline killed mid-build, through real git, sshd, engine and Swarm."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
from wireline_support import head, make_app, run, service_state

from unify_common.settings import CommonSettings
from unify_testkit import wait_until
from wireline.settings import WirelineSettings
from wireline.store import LockHolder, LockTimeout, Store

HOLD = """
import asyncio, sys
from unify_common.settings import CommonSettings
from wireline.settings import WirelineSettings
from wireline.store import Store, this_holder

async def main():
    store = await Store.open(WirelineSettings(lock_ttl_s=3), CommonSettings(
        nats_urls=(sys.argv[1],)), name="holder")
    lock = store.lock("locked-app", this_holder("killed-holder"))
    await lock.acquire(wait_s=1)
    print("held", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def _store(url: str) -> Store:
    return await Store.open(WirelineSettings(lock_ttl_s=3), CommonSettings(nats_urls=(url,)),
                            name="test")


async def test_lock_waits_then_gives_up_and_expires_after_a_kill(wl_nats):
    store = await _store(wl_nats.url)
    try:
        first = store.lock("app-a", LockHolder(holder="first", host="h", pid=1, since=0))
        await first.acquire(wait_s=0)
        told: list = []
        second = store.lock("app-a", LockHolder(holder="second"))
        started = time.monotonic()
        with pytest.raises(LockTimeout) as err:
            await second.acquire(wait_s=1.0, on_wait=told.append)
        assert 1.0 <= time.monotonic() - started < 2.5
        assert err.value.holder == LockHolder(holder="first", host="h", pid=1, since=0)
        assert told == [err.value.holder]
        # the heartbeat keeps the lock past its TTL
        await asyncio.sleep(4)
        assert (await store.lock_holder("app-a")).holder == "first"
        await first.release()
        assert await store.lock_holder("app-a") is None
        await second.acquire(wait_s=0)
        await second.release()

        # a holder killed with SIGKILL: its lock expires within the TTL (3 s)
        proc = subprocess.Popen([sys.executable, "-c", HOLD, wl_nats.url],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline() == "held\n"
            proc.kill()
            killed = time.monotonic()
        finally:
            proc.wait(timeout=10)
        assert (await store.lock_holder("locked-app")).holder == "killed-holder"
        third = store.lock("locked-app", LockHolder(holder="third"))
        await third.acquire(wait_s=10)
        assert time.monotonic() - killed <= 3 + 1.5
        await third.release()
    finally:
        await store.close()


SLOW = """FROM unify-local/debian:bookworm
WORKDIR /srv
RUN echo {tag} && sleep {sleep}
COPY site/ /srv/
CMD ["python3", "-m", "http.server", "8000"]
"""


def _slow(repo, *, tag: str, sleep: int) -> None:
    (repo / "Dockerfile").write_text(SLOW.format(tag=tag, sleep=sleep))
    run(["git", "-C", str(repo), "commit", "-q", "-am", tag])


@pytest.mark.timeout(300)
def test_concurrent_pushes_and_a_killed_wireline(wireline, wl_nats, tmp_path):
    alice = wireline.new_key("alice-lock", apps="racer")
    bob = wireline.new_key("bob-lock", apps="racer")
    base = make_app(tmp_path / "a", version="1")
    other = tmp_path / "b"
    run(["git", "clone", "-q", str(base), str(other)])
    run(["git", "-C", str(other), "config", "user.email", "b@example.test"])
    run(["git", "-C", str(other), "config", "user.name", "b"])
    _slow(base, tag=f"a-{time.time_ns()}", sleep=4)
    _slow(other, tag=f"b-{time.time_ns()}", sleep=0)

    first = wireline.push_async(base, alice, "racer")
    wait_until(lambda: "locked by alice-lock" in wireline.unify("apps", "lock", "racer").stdout,
               timeout=60, what="alice's push holds the lock")
    second = wireline.push(other, bob, "racer")
    out_first, _ = first.communicate(timeout=200)
    assert first.returncode == 0, out_first
    remote = [line[8:].rstrip() for line in second.stderr.splitlines()
              if line.startswith("remote: ")]
    assert remote[0].startswith("waiting for alice-lock (SHA256:")
    assert remote[1] == ("deploy failed: refs/heads/main moved to "
                         f"{head(base)[:12]} while this push waited; fetch, merge and push again")
    assert second.returncode != 0
    releases = wireline.releases("racer")
    assert [(r["number"], r["outcome"], r["pusher"]) for r in releases] == \
        [(1, "deployed", "alice-lock")]
    assert service_state("racer") == (releases[0]["images"]["web"], 1)

    # a wireline killed mid-build: its lock expires within the TTL, the next push proceeds
    _slow(base, tag=f"k-{time.time_ns()}", sleep=20)
    doomed = wireline.push_async(base, alice, "racer")
    wait_until(lambda: "locked by alice-lock" in wireline.unify("apps", "lock", "racer").stdout,
               timeout=60, what="the doomed push holds the lock")
    line = wireline.unify("apps", "lock", "racer").stdout
    pid = int(line.split(" pid ")[1].split(",")[0])
    assert pid == wireline.process.pid  # pushes run inside the service
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    output, _ = doomed.communicate(timeout=60)
    assert doomed.returncode != 0
    assert "remote: deploy failed: wireline went away during the push" in output
    wait_until(lambda: wireline.unify("apps", "lock", "racer").stdout == "racer: not locked\n",
               timeout=10, what="the dead holder's lock expired")
    assert time.monotonic() - killed <= 3 + 2  # the TTL, plus JetStream's expiry sweep
    wireline.restart()
    # bob fetches through wireline (git-upload-pack) and builds on the deployed commit
    run(["git", "-C", str(other), "fetch", "-q", wireline.url("racer"), "main"],
        env=dict(os.environ, GIT_SSH_COMMAND=wireline.ssh_command(bob)))
    run(["git", "-C", str(other), "reset", "-q", "--hard", "FETCH_HEAD"])
    _slow(other, tag=f"n-{time.time_ns()}", sleep=0)
    result = wireline.push(other, bob, "racer")
    assert result.returncode == 0, result.stderr
    assert wireline.releases("racer")[-1]["pusher"] == "bob-lock"
