"""The subscriber shell's timing rules (debounce, max wait, retry backoff, resync, request)
and the bounded wait for the catalog, on a fake clock: no real sleeps."""

from __future__ import annotations

import logging

import pytest

from unify_common.quiescence import Schedule
from unify_common.retry import retry_until


def schedule(**overrides) -> Schedule:
    values = dict(min_wait=0.1, max_wait=1.0, retry_base=0.25, retry_max=4.0, resync=300.0,
                  rng=lambda a, b: 1.0)  # no jitter: exact delays
    values.update(overrides)
    return Schedule(**values)


def test_nothing_is_due_before_the_first_reconcile_without_a_reason():
    s = schedule()
    assert (s.due_at(), s.reason(1e9)) == (None, None)


def test_a_burst_of_changes_gives_one_reconcile_after_min_wait():
    s = schedule()
    for t in (10.0, 10.05, 10.08):
        s.changed(t)
    assert s.due_at() == pytest.approx(10.18)
    assert s.reason(10.17) is None
    assert s.reason(10.18) == "change"
    s.begin()
    assert s.due_at() is None  # the reconcile took every change in


def test_continuous_churn_reconciles_every_max_wait():
    s = schedule()
    t = 0.0
    runs = []
    while t < 3.0:
        s.changed(t)  # a change every 50 ms, forever
        if s.reason(t) is not None:
            runs.append(round(t, 2))
            s.begin()
            s.succeeded(t)
        t = round(t + 0.05, 2)
    assert runs == [1.0, 2.05]  # the first change of each burst fixes the deadline


def test_a_request_is_due_at_once_and_wins_over_other_reasons():
    s = schedule()
    s.changed(5.0)
    s.request(5.0)
    assert (s.due_at(), s.reason(5.0)) == (5.0, "request")
    s.request(6.0)  # a second request before the run keeps the first time
    assert s.due_at() == 5.0
    s.begin()
    assert s.due_at() is None


def test_resync_follows_the_last_reconcile_and_any_reconcile_restarts_it():
    s = schedule(resync=300.0)
    s.request(0.0)
    s.begin()
    s.succeeded(0.5)
    assert (s.due_at(), s.reason(300.4), s.reason(300.5)) == (300.5, None, "resync")
    s.changed(100.0)  # a change in between: its reconcile pushes the resync back
    assert s.reason(100.1) == "change"
    s.begin()
    s.succeeded(100.2)
    assert s.due_at() == pytest.approx(400.2)


def test_resync_zero_means_never():
    s = schedule(resync=0.0)
    s.request(0.0)
    s.begin()
    s.succeeded(1.0)
    assert s.due_at() is None


def test_failures_retry_with_capped_exponential_backoff_and_reset_on_success():
    s = schedule(retry_base=0.25, retry_max=4.0)
    now, delays = 0.0, []
    s.request(now)
    for _ in range(6):
        assert s.reason(now) is not None
        s.begin()
        delay = s.failed(now)
        delays.append(delay)
        assert (s.retry_at, s.reason(now + delay - 0.001)) == (now + delay, None)
        now += delay
        assert s.reason(now) == "retry"
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert s.failures == 6
    s.begin()
    s.succeeded(now)
    assert (s.failures, s.retry_at, s.due_at()) == (0, None, now + 300.0)
    s.request(now)
    s.begin()
    assert s.failed(now) == 0.5  # the backoff starts over


def test_retry_jitter_is_between_half_and_whole_delay():
    low = schedule(rng=lambda a, b: a)
    low.request(0.0)
    low.begin()
    assert low.failed(0.0) == 0.25


def test_a_change_during_backoff_runs_at_its_debounce_not_the_retry():
    s = schedule()
    s.request(0.0)
    s.begin()
    assert s.failed(0.0) == 0.5
    s.changed(0.1)  # may be the fix: no need to wait for the retry timer
    assert (s.due_at(), s.reason(0.2)) == (pytest.approx(0.2), "change")
    s.begin()
    assert s.retry_at is None  # one timer: the run that began took the retry in


def test_schedule_rejects_bad_timings():
    with pytest.raises(ValueError):
        schedule(retry_base=0.0)
    with pytest.raises(ValueError):
        schedule(retry_base=5.0, retry_max=1.0)
    with pytest.raises(ValueError):
        schedule(resync=-1.0)
    with pytest.raises(ValueError):
        schedule(min_wait=2.0, max_wait=1.0)


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


class Missing(Exception):
    pass


async def test_retry_until_waits_with_backoff_and_returns(caplog):
    fake = FakeTime()
    calls = []

    async def probe():
        calls.append(fake.now)
        if len(calls) < 4:
            raise Missing("stream UNIFY does not exist yet")
        return "bucket"

    with caplog.at_level(logging.WARNING):
        assert await retry_until(probe, what="waiting", log=logging.getLogger("t"),
                                 timeout=60.0, retry_on=(Missing,), base=0.1, cap=5.0,
                                 clock=fake.clock, sleep=fake.sleep,
                                 rng=lambda a, b: 1.0) == "bucket"
    assert fake.sleeps == [0.2, 0.4, 0.8]
    assert [(r.getMessage(), r.fields["attempt"], r.fields["reason"]) for r in caplog.records] \
        == [("waiting", n, "stream UNIFY does not exist yet") for n in (1, 2, 3)]


async def test_retry_until_gives_up_at_the_deadline_and_lets_other_errors_through():
    fake = FakeTime()

    async def never():
        raise Missing("still missing")

    with pytest.raises(Missing):
        await retry_until(never, what="waiting", log=logging.getLogger("t"), timeout=10.0,
                          retry_on=(Missing,), base=1.0, cap=4.0, clock=fake.clock,
                          sleep=fake.sleep, rng=lambda a, b: 1.0)
    assert fake.sleeps == [2.0, 4.0, 4.0]  # the last one ends on the deadline
    assert fake.now == pytest.approx(110.0)

    async def broken():
        raise PermissionError("no permission")

    with pytest.raises(PermissionError):
        await retry_until(broken, what="waiting", log=logging.getLogger("t"), timeout=10.0,
                          retry_on=(Missing,), clock=fake.clock, sleep=fake.sleep)


@pytest.mark.parametrize(("raw", "expected"), [("", 300.0), ("60", 60.0), ("0", 0.0)])
def test_resync_setting(raw, expected):
    from unify_common.settings import CommonSettings

    assert CommonSettings.from_env({"UNIFY_RESYNC": raw}).resync == expected


def test_resync_setting_rejects_negative_and_non_numbers():
    from unify_common.settings import CommonSettings

    with pytest.raises(ValueError, match="UNIFY_RESYNC must be 0 or more seconds, got -1"):
        CommonSettings.from_env({"UNIFY_RESYNC": "-1"})
    with pytest.raises(ValueError, match="UNIFY_RESYNC must be a number"):
        CommonSettings.from_env({"UNIFY_RESYNC": "5m"})


@pytest.mark.parametrize(("error", "kind"), [
    (OSError(), "os-error"), (ConnectionRefusedError(), "connection-refused-error"),
    (TimeoutError(), "timeout-error"), (type("ApplyFailed", (Exception,), {})(), "apply-failed"),
    (type("PortsUnavailable", (OSError,), {})(), "ports-unavailable"),
])
def test_failure_kind_is_the_class_name_in_dashes(error, kind):
    from unify_common.subscriber import failure_kind

    assert failure_kind(error) == kind
