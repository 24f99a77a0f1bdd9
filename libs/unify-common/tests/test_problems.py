"""ProblemReporter: each problem is published once while it persists, again after it left."""

from __future__ import annotations

import asyncio

from unify_common.events import ErrorEvent
from unify_common.problems import Problem, ProblemReporter


def _run(coro):
    return asyncio.run(coro)


def test_problem_fingerprint_and_event():
    p = Problem("invalid-tags", "bad tag 'x=='", service="web", instance_id="web-1")
    assert p.fingerprint == Problem("invalid-tags", "bad tag 'x=='", service="web",
                                    instance_id="web-1").fingerprint
    assert len(p.fingerprint) == 16
    assert p.fingerprint != Problem("invalid-tags", "bad tag 'y=='", service="web").fingerprint
    event = p.event("switchboard", node="n1", observed_at=1234)
    assert event == ErrorEvent(source="switchboard", reason="invalid-tags",
                               message="bad tag 'x=='", service="web", instance_id="web-1",
                               node="n1", observed_at=1234)
    assert Problem("r", "m", node="n9").event("dns411", node="n1", observed_at=1).node == "n9"


def test_reporter_publishes_new_problems_once():
    sent: list[tuple[str, ErrorEvent, str]] = []

    async def publish(subject, event, msg_id):
        sent.append((subject, event, msg_id))

    reporter = ProblemReporter("dns411", "n1", publish)
    a, b = Problem("name-conflict", "a"), Problem("invalid-address", "b", service="s")
    assert _run(reporter.report([a, b])) == [b, a]  # sorted by field: invalid- < name-
    assert [(s, e.reason, e.node) for s, e, _ in sent] == [
        ("unify.error.dns411", "invalid-address", "n1"),
        ("unify.error.dns411", "name-conflict", "n1")]
    assert [m.rsplit(":", 1)[0] for _, _, m in sent] == [
        f"dns411:n1:problem:{b.fingerprint}", f"dns411:n1:problem:{a.fingerprint}"]
    assert _run(reporter.report([a, b])) == []
    assert len(sent) == 2
    assert _run(reporter.report([a])) == []          # b went away
    assert reporter.reported == frozenset({a})
    assert _run(reporter.report([a, b])) == [b]      # and came back: reported again
    assert len(sent) == 3


def test_reporter_retries_when_publish_fails():
    calls: list[str] = []

    async def publish(subject, event, msg_id):
        calls.append(event.reason)
        if len(calls) == 1:
            raise ConnectionError("nats down")

    reporter = ProblemReporter("switchboard", "n1", publish)
    p = Problem("route-conflict", "two services claim a.example")
    assert _run(reporter.report([p])) == [p]
    assert reporter.reported == frozenset()
    assert _run(reporter.report([p])) == [p]
    assert calls == ["route-conflict", "route-conflict"]
    assert reporter.reported == frozenset({p})


def test_reporter_without_nats_only_logs():
    reporter = ProblemReporter("dns411", "n1", None)
    p = Problem("r", "m")
    assert _run(reporter.report([p])) == [p]
    assert _run(reporter.report([p])) == []
