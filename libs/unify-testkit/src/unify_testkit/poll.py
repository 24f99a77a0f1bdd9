"""Poll until a condition holds: the one helper the tests, fixtures and benchmarks use.

:func:`wait_until` (blocking) and :func:`unify_testkit.aio.wait_until` (its async twin, same
signature) call ``probe()`` until ``until(value)`` is true and return that value. While the
component under test is not there yet the probe may also *raise* one of :data:`NOT_YET`
(a failed ``assert``, a refused connection or an HTTP error, a DNS timeout): that counts as
"not yet" too. At the deadline the failure names ``what`` and shows the last value seen (or
the last error raised), so a test that times out says what it was looking at.

Two ways of writing a probe, both common in this suite::

    wait_until(lambda: len(events.applied), lambda n: n == 2, what="two Applied")
    wait_until(lambda: len(events.applied) == 2, what="two Applied")   # truthiness
    wait_until(lambda: assert_web(port, ["10.0.0.1"]), returns)        # a check that asserts
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import dns.exception

__all__ = ["NOT_YET", "NotReached", "returns", "wait_until"]

T = TypeVar("T")

#: Exceptions a probe may raise meaning "not yet": a failed ``assert``; ``OSError``, which
#: covers refused connections, ``urllib`` and ``docker`` API errors (both are ``OSError``
#: subclasses) and missing files; dnspython's timeouts and negative answers.
NOT_YET: tuple[type[BaseException], ...] = (AssertionError, OSError,
                                            dns.exception.DNSException)

#: How much of the last value's ``repr`` a failure message shows.
_REPR_LIMIT = 2000


class NotReached(AssertionError):
    """The condition did not hold within the timeout. The message names ``what``, the
    timeout, and the last value seen or the last error raised (also chained as the
    ``__cause__``)."""


def returns(value: object) -> bool:  # noqa: ARG001 (the value is not needed)
    """An ``until`` for probes that check by asserting: any value the probe returns without
    raising counts, ``None`` and other falsy values included."""
    return True


class _Attempts:
    """The deadline and last outcome shared by the blocking and the async loop."""

    def __init__(self, probe: Callable[..., Any], until: Callable[[Any], object] | None,
                 timeout: float, what: str, interval: float,
                 retry_on: tuple[type[BaseException], ...]) -> None:
        if timeout < 0 or interval <= 0:
            raise ValueError(f"timeout must be >= 0 and interval > 0 (got {timeout}, "
                             f"{interval})")
        self.until = bool if until is None else until
        self.timeout = timeout
        self.what = what or getattr(probe, "__qualname__", repr(probe))
        self.interval = interval
        self.retry_on = retry_on
        self.deadline = time.monotonic() + timeout
        self.value: Any = None
        self.error: BaseException | None = None
        self.error_on_value = False  # the error came from ``until`` judging ``value``

    def judge(self, value: Any) -> bool:
        """Record ``value``; whether ``until`` accepts it (its ``retry_on`` errors: no)."""
        self.value, self.error, self.error_on_value = value, None, False
        try:
            return bool(self.until(value))
        except self.retry_on as err:
            self.error, self.error_on_value = err, True
            return False

    def failed(self, err: BaseException) -> None:
        """Record an error the probe raised (one of ``retry_on``)."""
        self.error, self.error_on_value = err, False

    def pause(self) -> float | None:
        """Seconds to sleep before the next attempt, or None once the deadline has passed
        (the last attempt is made at the deadline, not after it)."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        return min(self.interval, remaining)

    def give_up(self) -> NotReached:
        """The failure to raise, showing the last value or error."""
        if self.error is not None:
            last = f"last error: {self.error!r}"
            if self.error_on_value:
                last += f" on value {_short(self.value)}"
        else:
            last = f"last value: {_short(self.value)}"
        failure = NotReached(f"{self.what}: not reached in {self.timeout:g} s; {last}")
        failure.__cause__ = self.error
        return failure


def _short(value: object) -> str:
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[:_REPR_LIMIT] + f"... ({len(text)} characters)"
    return text


def wait_until(probe: Callable[[], T], until: Callable[[T], object] | None = None, *,
               timeout: float = 30.0, what: str = "", interval: float = 0.05,
               retry_on: tuple[type[BaseException], ...] = NOT_YET) -> T:
    """Call ``probe()`` every ``interval`` seconds until ``until(value)`` is true; return that
    value.

    :param probe: takes no argument; its return value is judged. Raising one of
        ``retry_on`` means "not yet"; any other exception propagates at once.
    :param until: a predicate over the value; by default the value's truthiness. Pass
        :func:`returns` when the probe checks by asserting and its value may be falsy.
    :param timeout: seconds until giving up (the probe is always called at least once).
    :param what: what is awaited, for the failure message (default: the probe's name).
    :param interval: seconds between attempts.
    :param retry_on: the exceptions that mean "not yet" (default :data:`NOT_YET`).
    :returns: the first value ``until`` accepted.
    :raises NotReached: (an ``AssertionError``) at the deadline, with the last value seen
        or the last error raised.
    :raises TypeError: ``probe`` is a coroutine function (use
        :func:`unify_testkit.aio.wait_until`).
    """
    attempts = _Attempts(probe, until, timeout, what, interval, retry_on)
    while True:
        try:
            value = probe()
        except retry_on as err:
            attempts.failed(err)
        else:
            if hasattr(value, "__await__"):
                close = getattr(value, "close", None)
                if close:
                    close()  # no "never awaited" warning
                raise TypeError(f"{attempts.what} returned an awaitable: use "
                                "unify_testkit.aio.wait_until")
            if attempts.judge(value):
                return value
        pause = attempts.pause()
        if pause is None:
            raise attempts.give_up()
        time.sleep(pause)
