"""The test kit's one poll helper, blocking and async: value returned, what counts as "not
yet", and what the failure says."""

from __future__ import annotations

import asyncio
import time

import dns.exception
import pytest

from unify_testkit import NotReached, aio, returns, wait_until


def counter(values):
    """A probe returning ``values`` one by one (the last one forever); counts its calls."""
    calls = []

    def probe():
        calls.append(1)
        return values[min(len(calls), len(values)) - 1]

    probe.calls = calls
    return probe


def test_returns_the_first_truthy_value():
    probe = counter([0, "", ["ready"]])
    assert wait_until(probe, timeout=5, interval=0.001) == ["ready"]
    assert len(probe.calls) == 3


def test_until_judges_the_value_and_the_accepted_value_is_returned():
    probe = counter([1, 2, 3, 4])
    assert wait_until(probe, lambda n: n >= 3, timeout=5, interval=0.001) == 3


def test_returns_accepts_a_falsy_value_from_a_check_that_asserts():
    assert wait_until(lambda: None, returns, timeout=1) is None
    assert wait_until(lambda: [], returns, timeout=1) == []


def test_not_yet_errors_are_retried_then_the_value_returned():
    outcomes = [AssertionError("no"), ConnectionRefusedError(111, "refused"),
                dns.exception.Timeout(), "up"]

    def probe():
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert wait_until(probe, timeout=5, interval=0.001) == "up"
    assert outcomes == []


def test_other_errors_propagate_at_once():
    started = time.monotonic()
    with pytest.raises(KeyError, match="'missing'"):
        wait_until(lambda: {}["missing"], timeout=10)
    assert time.monotonic() - started < 1


def test_failure_names_what_and_shows_the_last_value():
    probe = counter([1, 2])
    with pytest.raises(NotReached) as failure:
        wait_until(probe, lambda n: n == 3, timeout=0.1, interval=0.01, what="three replicas")
    assert str(failure.value) == "three replicas: not reached in 0.1 s; last value: 2"
    assert isinstance(failure.value, AssertionError)


def test_failure_shows_the_last_error_and_chains_it():
    def probe():
        raise AssertionError("status 503")

    with pytest.raises(NotReached) as failure:
        wait_until(probe, timeout=0.05, interval=0.01, what="web served")
    assert str(failure.value) == ("web served: not reached in 0.05 s; "
                                  "last error: AssertionError('status 503')")
    assert isinstance(failure.value.__cause__, AssertionError)


def test_an_error_from_until_is_shown_with_the_value():
    def until(value):
        if value != "b":
            raise AssertionError(f"got {value}")

    with pytest.raises(NotReached) as failure:
        wait_until(lambda: "a", until, timeout=0.02, interval=0.01, what="b")
    assert str(failure.value) == ("b: not reached in 0.02 s; last error: "
                                  "AssertionError('got a') on value 'a'")


def test_without_what_the_probe_is_named():
    def nothing_yet():
        return False

    with pytest.raises(NotReached) as failure:
        wait_until(nothing_yet, timeout=0)
    assert str(failure.value) == ("test_without_what_the_probe_is_named.<locals>.nothing_yet: "
                                  "not reached in 0 s; last value: False")


def test_timeout_zero_probes_once():
    probe = counter([False])
    with pytest.raises(NotReached):
        wait_until(probe, timeout=0)
    assert len(probe.calls) == 1


def test_the_last_attempt_is_made_at_the_deadline_not_after():
    started = time.monotonic()
    with pytest.raises(NotReached):
        wait_until(lambda: False, timeout=0.2, interval=5)
    assert 0.2 <= time.monotonic() - started < 1.0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        wait_until(lambda: True, timeout=-1)
    with pytest.raises(ValueError):
        wait_until(lambda: True, interval=0)


async def test_the_blocking_form_refuses_a_coroutine_probe():
    async def probe():
        return True

    with pytest.raises(TypeError, match="use unify_testkit.aio.wait_until"):
        wait_until(probe, timeout=1)


async def test_async_awaits_the_probe_and_returns_the_accepted_value():
    seen = []

    async def probe():
        seen.append(len(seen))
        return len(seen)

    assert await aio.wait_until(probe, lambda n: n == 3, timeout=5, interval=0.001) == 3
    assert seen == [0, 1, 2]


async def test_async_takes_a_plain_predicate_and_lets_the_loop_run():
    state = {"done": False}

    async def later():
        await asyncio.sleep(0.05)
        state["done"] = True

    task = asyncio.create_task(later())
    assert await aio.wait_until(lambda: state["done"], timeout=5, what="done") is True
    await task


async def test_async_failure_shows_the_last_value_and_retries_not_yet_errors():
    calls = []

    async def probe():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("refused")
        return {"passing": 1}

    with pytest.raises(NotReached) as failure:
        await aio.wait_until(probe, lambda got: got == {"passing": 2}, timeout=0.05,
                             interval=0.01, what="two passing")
    assert str(failure.value) == ("two passing: not reached in 0.05 s; "
                                  "last value: {'passing': 1}")
    assert len(calls) >= 2


async def test_async_other_errors_propagate_at_once():
    async def probe():
        raise KeyError("missing")

    with pytest.raises(KeyError):
        await aio.wait_until(probe, timeout=10)
