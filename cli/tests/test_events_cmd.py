"""`unify events replay/tail` against a real nats-server, run as the real command."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys

import msgspec
import nats
import pytest

from unify_cli.events_cmd import parse_time
from unify_common import subjects
from unify_common.events import ErrorEvent, KvEntry, KvSet
from unify_common.natsio import ensure_stream, publish_event
from unify_common.settings import CommonSettings

NOW = dt.datetime(2026, 11, 30, 12, 0, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("10m", NOW - dt.timedelta(minutes=10), id="minutes"),
    pytest.param("2h", NOW - dt.timedelta(hours=2), id="hours"),
    pytest.param("1.5s", NOW - dt.timedelta(seconds=1.5), id="fractional-seconds"),
    pytest.param("2026-11-30T11:00:00Z", NOW - dt.timedelta(hours=1), id="rfc3339-z"),
    pytest.param("2026-11-30T12:00:00+01:00", NOW - dt.timedelta(hours=1), id="rfc3339-offset"),
])
def test_parse_time(text, expected):
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "10 minutes", "2026-11-30T11:00:00",
                                  "99999999999d", "999999d"])
def test_parse_time_rejects(text):
    with pytest.raises(ValueError):
        parse_time(text, now=NOW)


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
    middle = dt.datetime.now(dt.timezone.utc)
    await asyncio.sleep(0.2)
    await publish_event(js, subjects.error_subject("switchboard"),
                        ErrorEvent(source="switchboard", reason="config-check-failed",
                                   message="bad"), msg_id="err-1")
    await publish_kv(js, 5)
    await nc.close()

    lines = run_unify(nats_server.url, "events", "replay", "--from-seq", "2", "--json")
    assert [(json.loads(l)["seq"], json.loads(l)["event"]["type"]) for l in lines] == [
        (2, "kv.set"), (3, "kv.set"), (4, "error"), (5, "kv.set")]
    assert json.loads(lines[0])["event"]["entry"]["key"] == "unify/k2"

    lines = run_unify(nats_server.url, "events", "replay", "--since", middle.isoformat())
    assert [l.split()[1:4] for l in lines] == [
        ["4", "unify.error.switchboard", "error"], ["5", "unify.catalog.kv.set", "kv.set"]]
    assert lines[0].endswith("switchboard config-check-failed: bad")

    lines = run_unify(nats_server.url, "events", "replay", "--since", "1h",
                      "--until", middle.isoformat())
    assert [l.split()[1] for l in lines] == ["1", "2", "3"]

    lines = run_unify(nats_server.url, "events", "replay", "--from-seq", "1",
                      "--subject", "unify.error.>")
    assert [l.split()[1] for l in lines] == ["4"]

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
        await asyncio.sleep(1.5)  # let it subscribe
        await publish_kv(js, 2)
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
        assert line.split()[1:] == ["2", "unify.catalog.kv.set", "kv.set", "unify/k2='v2'"]
    finally:
        proc.terminate()
        proc.wait(10)
        await nc.close()


def test_hostile_text_cannot_split_lines_or_drive_the_terminal():
    from unify_cli.events_cmd import _printable

    assert _printable("id\n}evil") == "id\\n}evil"
    assert _printable("esc-\x1b[31mRED") == "esc-\\x1b[31mRED"
    assert _printable("plain") == "plain"


def test_unreachable_nats_gives_one_clear_error():
    env = dict(os.environ, NATS_URL="nats://127.0.0.1:1")
    result = subprocess.run([sys.executable, "-m", "unify_cli.main", "events", "replay",
                             "--since", "5m"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == ("unify: cannot reach NATS at nats://127.0.0.1:1 (nats: no servers "
                             "available for connection); set NATS_URL (for the dev stack: "
                             "source .unify/dev/env)\n")


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
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


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
        await asyncio.sleep(1.0)  # subscribed
        nc = await nats.connect(nats_server.url)
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
        await nc.close()
        await _until(lambda: len(out.lines) == 3)
        await asyncio.sleep(0.5)
        assert [line.split()[1:] for line in out.lines] == [
            ["2", "unify.catalog.kv.set", "kv.set", "unify/k2='v2'"],
            ["3", "unify.catalog.kv.set", "kv.set", "unify/k3='v3'"],
            ["4", "unify.catalog.kv.set", "kv.set", "unify/k4='v4'"]]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_summaries_of_errors_and_runtime_steps():
    from unify_cli.events_cmd import _summary
    from unify_common.events import Applied

    error = ErrorEvent(source="switchboard", reason="port-conflict", message="port 80 taken",
                       service="same", instance_id="same-id", node="k2")
    assert _summary(error) == "switchboard port-conflict same/same-id node=k2: port 80 taken"
    quick = Applied(source="switchboard", node="n1", method="runtime", config_hash="",
                    detail="ahead of the file: 1 server slot changed; revision 7")
    assert _summary(quick) == ("switchboard node=n1 runtime (ahead of the file: 1 server slot "
                               "changed; revision 7)")
    full = Applied(source="switchboard", node="n1", method="reload", config_hash="ab" * 32)
    assert _summary(full) == "switchboard node=n1 reload abababababab"


def test_replay_window_that_ends_before_it_starts_is_refused():
    env = dict(os.environ, NATS_URL="nats://127.0.0.1:1")
    result = subprocess.run([sys.executable, "-m", "unify_cli.main", "events", "replay",
                             "--since", "2026-11-30T12:00:00Z", "--until",
                             "2026-11-30T11:00:00Z"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("unify: --until (2026-11-30T11:00:00+00:00) is before --since "
                             "(2026-11-30T12:00:00+00:00): the window is empty\n")


def test_summary_of_an_update_says_what_changed():
    from unify_cli.events_cmd import _summary
    from unify_common.events import InstanceUpdated
    from tests.fixtures.catalog import make_instance

    before = make_instance("fr", "fr-2", "127.0.0.1", 21002, ["dns=a.test"])
    weighted = msgspec.structs.replace(before, weight=5)
    moved = msgspec.structs.replace(before, address="127.0.0.2", tags=("dns=b.test",))
    assert _summary(InstanceUpdated(instance=weighted, previous=before)) == (
        "fr/fr-2 node=node-1 127.0.0.1:21002 passing (weight 1 -> 5)")
    assert _summary(InstanceUpdated(instance=moved, previous=before)) == (
        "fr/fr-2 node=node-1 127.0.0.2:21002 passing (was 127.0.0.1:21002; tags changed)")


def test_summary_of_a_value_that_is_not_utf8_shows_its_exact_bytes():
    from unify_cli.events_cmd import _summary

    text = KvSet(entry=KvEntry.from_bytes("unify/k", b"10.0.0.1"))
    binary = KvSet(entry=KvEntry.from_bytes("unify/k", b"\xff\xfe-1"))
    assert _summary(text) == "unify/k='10.0.0.1'"
    assert _summary(binary) == "unify/k=b'\\xff\\xfe-1'"
