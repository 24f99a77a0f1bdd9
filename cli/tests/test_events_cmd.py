"""`unify events`: time parsing, summaries and refusals (no NATS needed; the command runs
for real where it says so)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import msgspec
import pytest

from unify_cli.events_cmd import parse_time
from unify_common.events import ErrorEvent, KvEntry, KvSet

NOW = dt.datetime(2026, 11, 30, 12, 0, 0, tzinfo=dt.UTC)


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
    assert result.returncode == 1  # a runtime failure, not a usage error
    assert result.stdout == ""
    assert result.stderr == ("unify: cannot reach NATS at nats://127.0.0.1:1 (nats: no servers "
                             "available for connection); set NATS_URL (for the dev stack: "
                             "source .unify/dev/env)\n")


def test_summaries_of_errors_and_runtime_steps():
    from unify_cli.events_cmd import _summary
    from unify_common.events import Applied

    error = ErrorEvent(source="switchboard", reason="port-conflict", message="port 80 taken",
                       service="same", instance_id="same-id", node="k2")
    assert _summary(error) == "switchboard port-conflict same/same-id node=k2: port 80 taken"
    per_name = ErrorEvent(source="dns411", reason="vhost-rejected", message="no CNAME",
                          service="shop", node="k2")
    assert _summary(per_name) == "dns411 vhost-rejected shop node=k2: no CNAME"
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
    from tests.fixtures.catalog import make_instance
    from unify_cli.events_cmd import _summary
    from unify_common.events import InstanceUpdated

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


def test_summaries_of_registry_and_wireline_events():
    from unify_cli.events_cmd import _summary
    from unify_common.events import (
        BuildOutput,
        DeployFailed,
        ImageDeleted,
        ImagePushed,
        RegistryStep,
        Release,
        ReleaseRecorded,
    )

    digest = "sha256:" + "ab" * 32
    sha = "0123456789abcdef" * 2 + "01234567"
    pushed = ImagePushed(repository="ticker/web", tag="v1", digest=digest, size=1234,
                         actor="ci", instance="reg-1:5000")
    assert _summary(pushed) == f"ticker/web:v1@{digest} 1234 bytes actor=ci instance=reg-1:5000"
    by_digest = ImagePushed(repository="ticker/web", tag="", digest=digest)
    assert _summary(by_digest) == f"ticker/web@{digest}"
    assert _summary(ImageDeleted(repository="ticker/web", digest=digest, actor="admin")) == (
        f"ticker/web@{digest} actor=admin")
    assert _summary(ImageDeleted(repository="ticker/web", tag="old")) == "ticker/web:old"
    step = RegistryStep(source="registry-admin", operation="gc", run_id="r-7", step="sweep",
                        status="ok", detail="12 blobs deleted", instance="reg-1:5000")
    assert _summary(step) == ("registry-admin gc run=r-7 sweep ok instance=reg-1:5000: "
                              "12 blobs deleted")
    started = RegistryStep(source="registry-admin", operation="gc", run_id="r-7",
                           step="read-only", status="started")
    assert _summary(started) == "registry-admin gc run=r-7 read-only started"

    deployed = Release(app="ticker", number=7, kind="push", outcome="deployed", sha=sha,
                       pusher="alice")
    assert _summary(ReleaseRecorded(release=deployed)) == (
        "ticker release 7 push deployed 0123456789ab by alice")
    rollback = Release(app="ticker", number=8, kind="rollback", outcome="deployed", sha=sha,
                       pusher="root", rollback_of=2)
    assert _summary(ReleaseRecorded(release=rollback)) == (
        "ticker release 8 rollback of 2 deployed 0123456789ab by root")
    failed = Release(app="ticker", number=9, kind="push", outcome="failed", sha=sha,
                     pusher="alice", message="service web: Swarm rolled the update back")
    assert _summary(ReleaseRecorded(release=failed)) == (
        "ticker release 9 push failed 0123456789ab by alice: "
        "service web: Swarm rolled the update back")
    removed = Release(app="ticker", number=10, kind="remove", outcome="removed")
    assert _summary(ReleaseRecorded(release=removed)) == "ticker release 10 remove removed"

    chunk = BuildOutput(app="ticker", number=7, first_line=20,
                        lines=tuple(f"Step {i}/40" for i in range(21, 41)))
    assert _summary(chunk) == "ticker release 7 lines 21-40: Step 40/40"
    long = BuildOutput(app="ticker", number=7, first_line=0, lines=("x" * 100,))
    assert _summary(long) == "ticker release 7 lines 1-1: " + "x" * 80 + "..."
    health = DeployFailed(app="ticker", number=9, sha=sha, stage="health", pusher="alice",
                          message="service web: Swarm rolled the update back")
    assert _summary(health) == ("ticker release 9 0123456789ab stage=health by alice: "
                                "service web: Swarm rolled the update back")
