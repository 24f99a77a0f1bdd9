"""`unify events replay/tail` against a real nats-server, run as the real command."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys

import nats

from unify_common import subjects
from unify_common.events import ErrorEvent, KvEntry, KvSet
from unify_common.natsio import ensure_stream, publish_event
from unify_common.settings import CommonSettings
from unify_testkit.aio import wait_until


async def tail_subscribed(js) -> None:
    """Wait until the tail's consumer exists on the stream (what it shows starts there)."""
    await wait_until(lambda: js.stream_info("UNIFY"), lambda info: info.state.consumer_count >= 1,
                     timeout=15, what="the tail's consumer on UNIFY")


def run_unify(nats_url: str, *args: str) -> list[str]:
    env = dict(os.environ, NATS_URL=nats_url)
    result = subprocess.run([sys.executable, "-m", "unify_cli.main", *args], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


async def publish_kv(js, n: int) -> None:
    event = KvSet(entry=KvEntry(key=f"unify/k{n}", value=f"v{n}", modify_index=n),
                  observed_at=n)
    await publish_event(js, subjects.kv_subject("set"), event, msg_id=f"kv-{n}")


async def test_replay_windows(nats_server):
    settings = CommonSettings(nats_urls=(nats_server.url,))
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, settings)
    for n in (1, 2, 3):
        await publish_kv(js, n)
    await publish_kv(js, 3)  # a retried publish: same message id, dropped by JetStream
    await asyncio.sleep(1.2)
    middle = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.2)
    await publish_event(js, subjects.error_subject("switchboard"),
                        ErrorEvent(source="switchboard", reason="config-check-failed",
                                   message="bad"), msg_id="err-1")
    await publish_kv(js, 5)
    await nc.close()

    lines = run_unify(nats_server.url, "events", "replay", "--from-seq", "2", "--json")
    assert [(json.loads(line)["seq"], json.loads(line)["event"]["type"]) for line in lines] == [
        (2, "kv.set"), (3, "kv.set"), (4, "error"), (5, "kv.set")]
    assert json.loads(lines[0])["event"]["entry"]["key"] == "unify/k2"

    lines = run_unify(nats_server.url, "events", "replay", "--since", middle.isoformat())
    assert [line.split()[1:4] for line in lines] == [
        ["4", "unify.error.switchboard", "error"], ["5", "unify.catalog.kv.set", "kv.set"]]
    assert lines[0].endswith("switchboard config-check-failed: bad")

    lines = run_unify(nats_server.url, "events", "replay", "--since", "1h",
                      "--until", middle.isoformat())
    assert [line.split()[1] for line in lines] == ["1", "2", "3"]

    lines = run_unify(nats_server.url, "events", "replay", "--from-seq", "1",
                      "--subject", "unify.error.>")
    assert [line.split()[1] for line in lines] == ["4"]

    assert run_unify(nats_server.url, "events", "replay", "--from-seq", "6") == []


async def test_tail_prints_live_events(nats_server):
    settings = CommonSettings(nats_urls=(nats_server.url,))
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, settings)
    await publish_kv(js, 1)  # before tail: not shown
    env = dict(os.environ, NATS_URL=nats_server.url)
    proc = subprocess.Popen([sys.executable, "-m", "unify_cli.main", "events", "tail",
                             "--subject", "unify.catalog.>"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        await tail_subscribed(js)
        await publish_kv(js, 2)
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
        assert line.split()[1:] == ["2", "unify.catalog.kv.set", "kv.set", "unify/k2='v2'"]
    finally:
        proc.terminate()
        proc.wait(10)
        await nc.close()


async def test_replay_into_a_reader_that_stops_early_exits_quietly(nats_server):
    """`unify events replay | head -1`: no traceback when the pipe closes."""
    settings = CommonSettings(nats_urls=(nats_server.url,))
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, settings)
    for n in range(1, 3001):
        await publish_kv(js, n)
    await nc.close()
    env = dict(os.environ, NATS_URL=nats_server.url)
    proc = subprocess.Popen([sys.executable, "-m", "unify_cli.main", "events", "replay",
                             "--from-seq", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=60)
    assert first.split()[1:3] == [b"1", b"unify.catalog.kv.set"]
    assert (proc.returncode, stderr) == (0, b"")


class _Lines:
    """A text sink that collects whole lines (stands in for stdout / stderr)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.extend(line for line in text.splitlines() if line)

    def flush(self) -> None:
        pass


async def _until(predicate, timeout: float = 20.0) -> None:
    await wait_until(predicate, timeout=timeout)


async def test_tail_says_when_nats_goes_and_resumes_without_losing_events(nats_server):
    """NATS stops under a running tail: one line says so; NATS comes back (same store) and
    two events are published, the first before tail has reconnected; tail prints both, in
    order, once each, and says where it resumed."""
    from unify_cli.events_cmd import tail

    settings = CommonSettings(nats_urls=(nats_server.url,))
    nc = await nats.connect(nats_server.url)
    await ensure_stream(nc.jetstream(), settings)
    await publish_kv(nc.jetstream(), 1)  # before tail: not shown
    await nc.close()
    out, err, stop = _Lines(), _Lines(), asyncio.Event()
    task = asyncio.create_task(tail(settings, subject="unify.catalog.>", as_json=False,
                                    out=out, err=err, stop=stop, retry_s=2.0))
    try:
        nc = await nats.connect(nats_server.url)
        await tail_subscribed(nc.jetstream())
        await publish_kv(nc.jetstream(), 2)
        await nc.close()
        await _until(lambda: len(out.lines) == 1)
        nats_server.stop()
        await _until(lambda: err.lines)
        assert err.lines == ["unify: lost the connection to NATS; trying again every 2 s"]
        nats_server.start()
        nc = await nats.connect(nats_server.url)
        await publish_kv(nc.jetstream(), 3)  # tail is still waiting to retry
        await _until(lambda: len(err.lines) == 2)
        assert err.lines[1] == "unify: connected to NATS again; resuming after sequence 2"
        await publish_kv(nc.jetstream(), 4)
        await _until(lambda: len(out.lines) == 3)
        # sentinel: tail prints in stream order, so a repeated 3 or 4 would come before 5
        await publish_kv(nc.jetstream(), 5)
        await nc.close()
        await _until(lambda: any(line.split()[1] == "5" for line in out.lines))
        assert [line.split()[1:] for line in out.lines] == [
            ["2", "unify.catalog.kv.set", "kv.set", "unify/k2='v2'"],
            ["3", "unify.catalog.kv.set", "kv.set", "unify/k3='v3'"],
            ["4", "unify.catalog.kv.set", "kv.set", "unify/k4='v4'"],
            ["5", "unify.catalog.kv.set", "kv.set", "unify/k5='v5'"]]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
